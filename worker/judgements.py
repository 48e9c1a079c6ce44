"""Relevance judgements (qrels) of a job: stored from a JSON body, a JSONL upload or a TREC qrels
file, read back for its evaluation, copied to its reruns. An upload with a bad line is refused
whole (422 naming the line); judgements stored before it stay as they were."""

import re
from collections.abc import Container, Sequence
from typing import Protocol

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, insert, literal, select
from sqlalchemy.orm import Session

from worker import store
from worker.errors import InvalidInput
from worker.jobfile import Line, line_error
from worker.models import Judgement, Query
from worker.spec import JudgementSpec
from worker.tenancy import TRUSTED, Caller

Qrels = dict[str, dict[str, int]]  # query id -> document id -> relevance: ir-measures' own shape


class JudgementsOut(BaseModel):
    job_id: str
    judgements: int = Field(description="Judgements the job holds now.")
    queries: int = Field(description="Of its queries, how many have at least one.")


def check(judgements: Sequence[JudgementSpec], query_ids: set[str], field: str = "qrels") -> None:
    """Every judgement names one of the job's queries, and no pair is judged twice."""
    seen: set[tuple[str, str]] = set()
    for index, judgement in enumerate(judgements):
        if judgement.query_id not in query_ids:
            raise InvalidInput(
                f"{field}.{index}.query_id: the job has no query '{judgement.query_id}'",
                field=f"{field}.{index}.query_id",
            )
        pair = (judgement.query_id, judgement.document_id)
        if pair in seen:
            raise InvalidInput(
                f"{field}.{index}: query '{pair[0]}' and document '{pair[1]}' are judged twice",
                field=f"{field}.{index}.document_id",
            )
        seen.add(pair)


def store_judgements(session: Session, job_id: str, judgements: Sequence[JudgementSpec]) -> None:
    """Add judgements to a job; a pair judged before takes its new relevance."""
    if not judgements:
        return
    rows = [
        {
            "job_id": job_id,
            "query_client_id": j.query_id,
            "document_client_id": j.document_id,
            "relevance": j.relevance,
        }
        for j in judgements
    ]
    stmt = store.dialect_insert(session, Judgement)
    keys = [Judgement.job_id, Judgement.query_client_id, Judgement.document_client_id]
    session.execute(
        stmt.on_conflict_do_update(index_elements=keys, set_={"relevance": stmt.excluded.relevance}), rows
    )


def qrels(session: Session, job_id: str) -> Qrels:
    found: Qrels = {}
    stmt = select(Judgement.query_client_id, Judgement.document_client_id, Judgement.relevance)
    for query_id, document_id, relevance in session.execute(stmt.where(Judgement.job_id == job_id)):
        found.setdefault(query_id, {})[document_id] = relevance
    return found


def summary(session: Session, job_id: str) -> JudgementsOut:
    stmt = select(func.count(), func.count(Judgement.query_client_id.distinct())).where(
        Judgement.job_id == job_id
    )
    judgements, queries = session.execute(stmt).one()
    return JudgementsOut(job_id=job_id, judgements=judgements, queries=queries)


def copy(session: Session, source_id: str, job_id: str) -> None:
    """A rerun's judgements: its source's, copied in the database."""
    columns = ["job_id", "query_client_id", "document_client_id", "relevance"]
    chosen = select(
        literal(job_id),
        Judgement.query_client_id,
        Judgement.document_client_id,
        Judgement.relevance,
    ).where(Judgement.job_id == source_id)
    session.execute(insert(Judgement).from_select(columns, chosen))


_TREC_LINE = re.compile(r"(\S+)\s+\S+\s+(\S+)\s+(-?\d+)")


def parse_trec(raw: bytes) -> JudgementSpec:
    """A TREC qrels line, `query_id iteration document_id relevance`; ValueError saying why not."""
    text = raw.decode("utf-8", errors="strict").strip()
    found = _TREC_LINE.fullmatch(text)
    if found is None:
        raise ValueError("expected 4 fields: query_id iteration document_id relevance (an integer)")
    query_id, document_id, relevance = found.groups()
    return JudgementSpec(query_id=query_id, document_id=document_id, relevance=int(relevance))


class LineParser(Protocol):
    def __call__(self, raw: bytes) -> JudgementSpec: ...


def parse_jsonl(raw: bytes) -> JudgementSpec:
    return JudgementSpec.model_validate_json(raw)


PARSERS: dict[str, LineParser] = {"jsonl": parse_jsonl, "trec": parse_trec}


class QrelsUpload:
    """Judgements of a finished or running job streamed in a block of lines at a time, in one
    transaction: a bad line refuses the upload and nothing of it is kept."""

    def __init__(
        self,
        session: Session,
        job_id: str,
        line_format: str,
        query_ids: Container[str] | None = None,
        caller: Caller = TRUSTED,
    ) -> None:
        """`query_ids`: the job's queries (default: read from the database, for a stored job
        `caller` may see)."""
        self.session = session
        self.job_id = job_id
        self.parse = PARSERS[line_format]
        if query_ids is None:
            store.get_job(session, job_id, caller)
            query_ids = set(session.scalars(select(Query.client_id).where(Query.job_id == job_id)))
        self.query_ids = query_ids
        self.lines: dict[tuple[str, str], int] = {}  # (query, document) -> the line judging it
        self.pending: list[Line] = []  # lines of a job file, added once its queries are all in
        self.count = 0

    def add(self, lines: Sequence[Line]) -> None:
        judgements = [self._judgement(number, raw) for number, raw in lines if raw.strip()]
        store_judgements(self.session, self.job_id, judgements)
        self.count += len(judgements)

    def _judgement(self, number: int, raw: bytes) -> JudgementSpec:
        try:
            judgement = self.parse(raw)
        except ValidationError as error:
            found = line_error(number, error)
            raise InvalidInput(f"line {number}: {found.explain()}", field=found.field) from error
        except ValueError as error:
            raise InvalidInput(f"line {number}: {error}", field="line") from error
        if judgement.query_id not in self.query_ids:
            raise InvalidInput(
                f"line {number}: the job has no query '{judgement.query_id}'", field="query_id"
            )
        pair = (judgement.query_id, judgement.document_id)
        if pair in self.lines:
            raise InvalidInput(
                f"line {number}: query '{pair[0]}' and document '{pair[1]}' were judged on line"
                f" {self.lines[pair]}",
                field="document_id",
            )
        self.lines[pair] = number
        return judgement

    def finish(self) -> JudgementsOut:
        if not self.count:
            raise InvalidInput("the upload has no judgements", field="body")
        self.session.commit()
        return summary(self.session, self.job_id)
