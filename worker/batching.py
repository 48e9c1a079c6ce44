"""A planned job's pairs cut into batches, in SQL: only the pairs the score cache lacks are
numbered, once, into a temporary table that the batches are made from, so a rerun of a million
pairs that barely changed batches only the few that changed. Each batched pair gets a narrow
`batch_documents` row; its document row is not written again. A job of its own documents has its
rows already (written at submit). A collection job's pairs wait in a second temporary table, its
snapshot (worker.collection.snapshot_pairs), and its rows are written from there."""

from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlalchemy.orm import Session

from worker import score_cache
from worker.db import drop_scratch
from worker.models import Job

SNAPSHOT = Table(
    "snapshot_pairs",
    MetaData(),
    Column("query_id", Integer),
    Column("client_id", String(255)),
    Column("source_id", Integer),  # the collection document
    Column("position", Integer),
    prefixes=["TEMPORARY"],
)

# Pairs numbered longest document first; a collection document's pairs (one per query) stay
# together, so a batch tokenizes and chunks each document once for all its queries. A pair's batch
# is its place in that order over the pairs a batch holds; cut by characters too, plus the
# characters before it over the characters a batch holds: a batch ends wherever either count
# crosses a multiple of its limit (numbers may skip: a pair longer than a batch's characters).
_NUMBER = """
    INSERT INTO planned_pairs ({columns}, number)
    SELECT {selected}, {number}
    FROM {pairs} d {joins}
    {where}
    WINDOW w AS (ORDER BY length({text}) DESC, {order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""
_BY_PAIRS = "(row_number() OVER w - 1) / :pairs"
_BY_CHARACTERS = "(sum(length({text})) OVER w - length({text})) / :characters"


@dataclass(frozen=True)
class Cut:
    """How a plan cuts a job's pairs into batches: at most `pairs` a batch, and, when `characters`
    is set, pairs starting within one span of that many document characters (so a batch holds
    at most that many, plus its last pair)."""

    pairs: int
    characters: int | None = None

    def __str__(self) -> str:
        if self.characters is None:
            return f"{self.pairs} pairs"
        return f"{self.characters} characters (at most {self.pairs} pairs)"


@dataclass(frozen=True)
class _Pairs:
    """Where a plan numbers its pairs from (`d` in _NUMBER), and which columns name a pair."""

    table: str
    columns: tuple[str, ...]
    order: str  # after the text's length: a stable order

    def number(self, cut: Cut, text: str, **parts: str) -> str:
        names = ", ".join(self.columns)
        selected = ", ".join(f"d.{column}" for column in self.columns)
        number = _BY_PAIRS
        if cut.characters is not None:
            number = f"{number} + {_BY_CHARACTERS.format(text=text)}"
        return _NUMBER.format(
            pairs=self.table,
            columns=names,
            selected=selected,
            order=self.order,
            number=number,
            text=text,
            **parts,
        )

    def scratch(self) -> str:
        columns = "".join(f"{column} INTEGER, " for column in self.columns)
        return f"CREATE TEMPORARY TABLE planned_pairs ({columns}number INTEGER)"


_OWN = _Pairs("documents", ("id",), "d.id")  # a job's own documents: its rows
_SNAPSHOT = _Pairs(SNAPSHOT.name, ("query_id", "source_id"), "d.source_id, d.query_id")
_INSERT_BATCHES = text(
    """
    INSERT INTO batches (job_id, number, status, pairs, attempts)
    SELECT :job_id, number, 'pending', count(*), 0 FROM planned_pairs GROUP BY number ORDER BY number
    """
)
_ASSIGN_BATCHES = text(
    """
    INSERT INTO batch_documents (batch_id, document_id)
    SELECT batches.id, planned_pairs.id
    FROM planned_pairs JOIN batches ON batches.job_id = :job_id AND batches.number = planned_pairs.number
    """
)
_WRITE_SNAPSHOT = text(
    """
    INSERT INTO documents (job_id, query_id, client_id, source_id, position)
    SELECT :job_id, query_id, client_id, source_id, position FROM snapshot_pairs
    """
)
# A cached pair has no batch (worker.ranking gives it its result).
_ASSIGN_SNAPSHOT = text(
    """
    INSERT INTO batch_documents (batch_id, document_id)
    SELECT b.id, d.id
    FROM documents d
    JOIN planned_pairs p ON p.query_id = d.query_id AND p.source_id = d.source_id
    JOIN batches b ON b.job_id = :job_id AND b.number = p.number
    WHERE d.job_id = :job_id
    """
)
_COUNT = text("SELECT count(*) FROM planned_pairs")


def create_snapshot(session: Session) -> None:
    drop_scratch(session, SNAPSHOT.name)
    SNAPSHOT.create(session.connection())


def plan_batches(session: Session, job: Job, key: str | None, cut: Cut) -> int:
    """Split a job's pairs that the cache holds no entry for under `key` (all of them without a
    key) into pending batches as `cut` says, longest first; how many pairs that is. The
    others are left without a batch: the cached pairs (see worker.ranking). A collection job's
    rows are written here, from its snapshot."""
    pairs = score_cache.pair_sql(job)
    snapshot = job.collection_id is not None
    kind = _SNAPSHOT if snapshot else _OWN
    params = {"job_id": job.id, "pairs": cut.pairs, "characters": cut.characters, "key": key}
    conditions = [] if snapshot else ["d.job_id = :job_id"]
    if key is not None:
        conditions.append("s.query_hash IS NULL")
    number = kind.number(
        cut,
        pairs.text,
        joins=pairs.source if key is None else pairs.entries("LEFT"),
        where=f"WHERE {' AND '.join(conditions)}" if conditions else "",
    )
    drop_scratch(session, "planned_pairs")
    session.execute(text(kind.scratch()))
    with score_cache.bulk_joins(session):  # a snapshot, planned pairs and the cache are hashed
        session.execute(text(number), params)
        session.execute(_INSERT_BATCHES, params)
        if snapshot:
            session.execute(_WRITE_SNAPSHOT, params)
        session.execute(_ASSIGN_SNAPSHOT if snapshot else _ASSIGN_BATCHES, params)
    batched = int(session.execute(_COUNT).scalar_one())
    drop_scratch(session, "planned_pairs")
    if snapshot:
        drop_scratch(session, SNAPSHOT.name)
    return batched
