"""Streamed uploads, a block of lines at a time so memory stays bounded whatever the size:
a collection's documents (bad lines reported and skipped) and a job file (a bad line rejects the
job, nothing of it is kept)."""

import json
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from pydantic import ValidationError
from sqlalchemy.orm import Session

from worker import collection, idempotency, store
from worker.config import Settings
from worker.errors import InvalidInput
from worker.idempotency import Fingerprint, RequestKey
from worker.jobfile import Line, line_error
from worker.jobs import NewJob, Stored, commit
from worker.judgements import QrelsUpload
from worker.models import Collection, CollectionDocument
from worker.spec import DocumentSpec, QuerySpec, too_deep, too_long
from worker.tenancy import TRUSTED, Caller
from worker.views import CollectionOut, LineError

KEPT_ERRORS = 100  # per-line errors kept on the collection (all are counted)


class CollectionUpload:
    """A collection being uploaded, a block of lines at a time: good lines are stored, bad ones
    are reported by line number and skipped; memory stays bounded by the block."""

    def __init__(
        self,
        session: Session,
        name: str | None,
        settings: Settings,
        caller: Caller = TRUSTED,
        request_key: RequestKey | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.max_document_chars = settings.max_document_chars
        self.max_json_depth = settings.max_json_depth
        self.collection = Collection(
            id=uuid4().hex, name=name, documents=0, error_count=0, errors=[], tenant=caller.tenant
        )
        self.errors: list[LineError] = []
        self.request_key = request_key
        self.fingerprint = Fingerprint(str(name))
        session.add(self.collection)
        session.flush()

    def add(self, lines: Sequence[Line]) -> None:
        rows: dict[str, dict[str, Any]] = {}
        for number, raw in lines:
            if self.request_key is not None:
                self.fingerprint.add(raw)
            if not raw.strip():
                continue
            if why := too_deep(raw, self.max_json_depth):
                self._reject(line_error(number, f"the line {why}"))
                continue
            try:
                document = DocumentSpec.model_validate_json(raw)
            except ValidationError as error:
                self._reject(line_error(number, error))
                continue
            if why := too_long(document, self.max_document_chars):
                self._reject(LineError(line=number, field="text", error=why))
                continue
            if document.id in rows:
                self._reject(
                    line_error(number, f"duplicate id '{document.id}' (line {rows[document.id]['position']})")
                )
                continue
            rows[document.id] = {
                "collection_id": self.collection.id,
                "client_id": document.id,
                "text": document.text,
                "meta": document.metadata,
                "position": number,
            }
        if rows:
            stored = set(self._insert_new(list(rows.values())))
            for client_id, row in rows.items():
                if client_id not in stored:
                    self._reject(line_error(row["position"], f"duplicate id '{client_id}' (an earlier line)"))
            self.collection.documents += len(stored)

    def _insert_new(self, rows: list[dict[str, Any]]) -> Sequence[str]:
        stmt = store.dialect_insert(self.session, CollectionDocument).values(rows).on_conflict_do_nothing()
        return self.session.scalars(stmt.returning(CollectionDocument.client_id)).all()

    def _reject(self, error: LineError) -> None:
        self.collection.error_count += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(error)

    def finish(self) -> tuple[CollectionOut, bool]:
        """The collection stored, or (True) the one an earlier request with the same
        Idempotency-Key stored: nothing new is kept."""
        if self.request_key is not None:
            fingerprint, hours = self.fingerprint.hexdigest(), self.settings.idempotency_hours
            if earlier := idempotency.replayed(self.session, self.request_key, fingerprint, hours):
                self.session.rollback()
                return CollectionOut.from_row(collection.get(self.session, earlier)), True
            idempotency.remember(self.session, self.request_key, fingerprint, self.collection.id)
        if not self.collection.documents:  # nothing kept: no empty collection is left behind
            first = f"; line {self.errors[0].line}: {self.errors[0].explain()}" if self.errors else ""
            raise InvalidInput(
                f"no document was accepted ({self.collection.error_count} line(s) rejected{first})",
                field=self.errors[0].field if self.errors else "body",
            )
        self.collection.errors = [error.model_dump() for error in self.errors]
        commit(self.session)
        return CollectionOut.from_row(self.collection), False


def judgement_line(raw: bytes) -> bool:
    """Whether a job file's line is a judgement ({"query_id", "document_id", "relevance"}) rather
    than a query: parsed twice only when the key's name appears in it at all."""
    if b'"query_id"' not in raw:
        return False
    try:
        found = json.loads(raw)
    except ValueError:
        return False
    return isinstance(found, dict) and "query_id" in found and "documents" not in found


class JobUpload:
    """A job streamed as JSONL (one query with its documents per line, the `rerankq submit`
    format; judgement lines may be mixed in). Stored as it arrives in one transaction: a bad line
    rejects the whole job."""

    def __init__(self, job: NewJob, settings: Settings) -> None:
        self.job = job
        self.max_document_chars = settings.max_document_chars
        self.max_json_depth = settings.max_json_depth
        self.query_lines: dict[str, int] = {}  # query id -> the line it came on
        self.qrels = QrelsUpload(job.session, job.job.id, "jsonl", query_ids=self.query_lines)

    def add(self, lines: Sequence[Line]) -> None:
        queries = []
        for number, raw in lines:
            if not raw.strip():
                continue
            if why := too_deep(raw, self.max_json_depth):
                raise InvalidInput(f"line {number}: the line {why}", field="body")
            if judgement_line(raw):
                self.qrels.pending.append((number, raw))  # checked once every query is in
                continue
            try:
                query = QuerySpec.model_validate_json(raw)
            except ValidationError as error:
                found = line_error(number, error)
                raise InvalidInput(f"line {number}: {found.explain()}", field=found.field) from error
            if oversized := query.oversized(self.max_document_chars):
                field, why = oversized
                raise InvalidInput(f"line {number}: {field}: {why}", field=field)
            if query.id in self.query_lines:
                raise InvalidInput(
                    f"line {number}: duplicate query id '{query.id}' (line {self.query_lines[query.id]})",
                    field="id",
                )
            self.query_lines[query.id] = number
            queries.append(query)
        self.job.add_queries(queries)

    def finish(self) -> Stored:
        if not self.query_lines:
            raise InvalidInput("the job file has no queries", field="queries")
        self.qrels.add(self.qrels.pending)
        return self.job.finish()
