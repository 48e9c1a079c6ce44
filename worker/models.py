"""The tables: a Job holds Queries, each Query its Documents; Batches group documents for scoring;
Results hold one raw score per document (unique, so a re-delivered batch cannot duplicate one)."""

from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.expression import false

from worker.db import Base
from worker.lifecycle import BatchStatus, JobStatus, Priority


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
def aware(moment: datetime | None) -> datetime | None:
    """A stored time as UTC: SQLite hands back naive datetimes; everything rerankq stores is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of only the rows `where` holds for, in both databases' dialects."""
    condition = sql_text(where)
    return Index(name, *columns, unique=unique, sqlite_where=condition, postgresql_where=condition)


class Collection(Base):
    """A knowledge base uploaded once; jobs rerank queries against its documents by reference."""

    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    documents: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the first ones, by line
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The tenant of the key that uploaded it (null: uploaded with RERANK_AUTH=off).
    tenant: Mapped[str | None] = mapped_column(String(255), index=True)
    # 1 when uploaded; each update (PATCH) that changes something moves it on by one.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CollectionDocument(Base):
    """A document's text at one version of its collection. An update never rewrites a row: a new
    text is a new row and the old one is marked removed (kept while a job's pairs refer to it), so
    a job planned earlier keeps reading the texts it was planned against."""

    __tablename__ = "collection_documents"
    __table_args__ = (
        partial_index(
            "ux_collection_documents_live",
            "collection_id",
            "client_id",
            where="removed_in IS NULL",
            unique=True,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    position: Mapped[int] = mapped_column(Integer)
    text_hash: Mapped[str | None] = mapped_column(String(32))  # worker.hashing.text_hash(text)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # written at
    removed_in: Mapped[int | None] = mapped_column(Integer)  # the version that replaced or deleted it


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.queued)
    model: Mapped[str] = mapped_column(String(512))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_pairs: Mapped[int] = mapped_column(Integer, default=0)
    done_pairs: Mapped[int] = mapped_column(Integer, default=0)
    failed_pairs: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(8), default=Priority.normal, server_default="normal")
    collection_id: Mapped[str | None] = mapped_column(ForeignKey("collections.id", ondelete="RESTRICT"))
    # The collection's version its pairs were taken from, recorded when the job is planned.
    collection_version: Mapped[int | None] = mapped_column(Integer)
    # The score cache's key for this job's scoring settings (worker.score_cache.ScoringKey), fixed
    # at plan time; null: the job neither reads nor fills the cache.
    cache_key: Mapped[str | None] = mapped_column(String(32))
    cached_pairs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # of done_pairs
    # options.max_length cut to the model's limit, recorded by the worker that scores the first batch
    # (the API never loads the model, so it cannot know the limit).
    effective_max_length: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A job made by a synchronous rerank route (/v2/rerank, /v1/rerank, /rerank) that a client waits on.
    synchronous: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Deliveries of the finished job to options.callback_url: tries so far, the last one's error.
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    webhook_error: Mapped[str | None] = mapped_column(Text)
    webhook_delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The tenant of the key that submitted it (null: submitted with RERANK_AUTH=off, or by `rerankq run`).
    tenant: Mapped[str | None] = mapped_column(String(255), index=True)
    # The job this one reran (POST /v1/jobs/{id}/rerun, or a schedule's run); null once that is deleted.
    rerun_of: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)


class Query(Base):
    __tablename__ = "queries"
    __table_args__ = (UniqueConstraint("job_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(Integer)
    # In a collection job: the documents to score (null: every document of the collection).
    document_ids: Mapped[list[str] | None] = mapped_column(JSON)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    text_hash: Mapped[str | None] = mapped_column(String(32))


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_job_status", "job_id", "status", "number"),
        Index("ix_batches_status_lease", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer, server_default="0")  # order in the job: longest pairs first
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.pending)
    pairs: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # last put on the queue
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A running batch belongs to `worker` until `lease_until` (renewed while it is scored); a lapsed
    # lease returns it to the queue. Once finished, `worker` says who scored it.
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(255))


class Worker(Base):
    """A worker process as its last heartbeat described it: live while `last_seen` is recent."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    model: Mapped[str] = mapped_column(String(512))  # the name it serves (RERANK_MODEL_NAME or RERANK_MODEL)
    model_path: Mapped[str | None] = mapped_column(String(512))  # RERANK_MODEL: where it loaded it from
    device: Mapped[str] = mapped_column(String(64))
    dtype: Mapped[str] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(1024))  # its batch queues, comma separated
    fingerprint: Mapped[str | None] = mapped_column(String(64))  # of the model's weights
    characters_per_second: Mapped[float | None] = mapped_column(Float)  # its speed (worker.speed)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Document(Base):
    """A pair: a query's document. No foreign keys: a collection job writes a million of these at
    once, and its code keeps what keys would (migration 0011 says how). A client's document ids
    are unique per query; a collection's are by the collection's own live index."""

    __tablename__ = "documents"
    __table_args__ = (
        partial_index(
            "ux_documents_own_client_id", "query_id", "client_id", where="source_id IS NULL", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    query_id: Mapped[int] = mapped_column(Integer)
    client_id: Mapped[str] = mapped_column(String(255))
    # A pair's document: its own text, or (collection jobs) a reference to text stored once.
    text: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[int | None] = mapped_column(Integer, index=True)  # a collection document
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    position: Mapped[int] = mapped_column(Integer)
    text_hash: Mapped[str | None] = mapped_column(String(32))  # a pair's own text's (not a collection's)


class BatchDocument(Base):
    """A planned pair's batch (a pair the score cache answered has none). A narrow row of its own,
    written once at planning: set on the document's row instead, it rewrote the whole row and an
    entry in each of its indexes, for every pair of a job, before the job's first batch could run.
    No foreign keys, as for documents (migration 0011)."""

    __tablename__ = "batch_documents"

    batch_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    document_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class Result(Base):
    """A pair's scores, one per document (its key); job and query are the document's, copied for
    the rank index. No foreign keys, as for documents (migration 0011)."""

    __tablename__ = "results"
    __table_args__ = (Index("ix_results_job_query_rank", "job_id", "query_id", "rank"),)

    document_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    job_id: Mapped[str] = mapped_column(String(32))
    query_id: Mapped[int] = mapped_column(Integer)
    raw_score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int | None] = mapped_column(Integer)
    # The winning window's character span in the original document, and how many windows were read.
    chunks: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    best_chunk: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_start: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_end: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # [[start, end, raw_score], ...] of every window, kept only for documents of several windows.
    windows: Mapped[list[list[float]] | None] = mapped_column(JSON)
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # not scored: reused


class ApiKey(Base):
    """A client's key: only its SHA-256 is stored (the key itself is shown once, at creation)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(255), index=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """An Idempotency-Key a tenant sent with a POST, the fingerprint of that request's body and
    what it created: a retry of the same request gets that object back."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant", "route", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(255))  # "" with RERANK_AUTH=off
    route: Mapped[str] = mapped_column(String(32))  # jobs | collections
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Judgement(Base):
    """A relevance judgement (one qrels line) of a job: by the client's query and document ids, so
    a judged document the job never retrieved still counts (recall, the ideal nDCG)."""

    __tablename__ = "judgements"
    __table_args__ = (UniqueConstraint("job_id", "query_client_id", "document_client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    query_client_id: Mapped[str] = mapped_column(String(255))
    document_client_id: Mapped[str] = mapped_column(String(255))
    relevance: Mapped[int] = mapped_column(Integer)


class Schedule(Base):
    """A standing job: its template job rerun at each time its cron expression names, in its time
    zone. `next_due_at` is the next such time (UTC), moved on by the tick that submits it."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"), index=True)
    cron: Mapped[str] = mapped_column(String(255))
    timezone: Mapped[str] = mapped_column(String(64))
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    next_due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The template job's tenant: its runs are that tenant's jobs (null with RERANK_AUTH=off).
    tenant: Mapped[str | None] = mapped_column(String(255), index=True)


class ScheduleRun(Base):
    """One due time of a schedule, claimed once (unique per schedule and due time, however many
    beats tick): the job it submitted, or why none could be."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CachedScore(Base):
    """A pair's scores, reusable by any job with the same scoring key (model, weights, dtype class,
    max_length, chunking and cleaning) and the same query and document texts (by hash)."""

    __tablename__ = "score_cache"
    __table_args__ = (
        UniqueConstraint("scoring_key", "query_hash", "document_hash", name="uq_score_cache_pair"),
        Index("ix_score_cache_created_at", "created_at"),
        Index("ix_score_cache_collection", "collection_id"),
        partial_index("ix_score_cache_truncated", "scoring_key", "query_hash", where="query_truncated"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scoring_key: Mapped[str] = mapped_column(String(32))
    query_hash: Mapped[str] = mapped_column(String(32))
    document_hash: Mapped[str] = mapped_column(String(32))
    # the collection the pair was scored for (pruned with it); null for a job's own documents
    collection_id: Mapped[str | None] = mapped_column(String(32))
    raw_score: Mapped[float] = mapped_column(Float)
    chunks: Mapped[int] = mapped_column(Integer)
    best_chunk: Mapped[int] = mapped_column(Integer)
    best_start: Mapped[int] = mapped_column(Integer)
    best_end: Mapped[int] = mapped_column(Integer)
    windows: Mapped[list[list[float]] | None] = mapped_column(JSON)
    query_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
