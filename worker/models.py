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


class Collection(Base):
    """A knowledge base uploaded once; jobs rerank queries against its documents by reference."""

    __tablename__ = "collections"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    documents: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the first ones, by line
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CollectionDocument(Base):
    __tablename__ = "collection_documents"
    __table_args__ = (UniqueConstraint("collection_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[str] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    position: Mapped[int] = mapped_column(Integer)


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
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("query_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(255))
    # A pair's document: its own text, or (collection jobs) a reference to text stored once.
    text: Mapped[str | None] = mapped_column(Text)
    source_id: Mapped[int | None] = mapped_column(
        ForeignKey("collection_documents.id", ondelete="RESTRICT"), index=True
    )
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    position: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"), index=True)


class Result(Base):
    __tablename__ = "results"
    __table_args__ = (Index("ix_results_job_query_rank", "job_id", "query_id", "rank"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    query_id: Mapped[int] = mapped_column(ForeignKey("queries.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), unique=True)
    raw_score: Mapped[float] = mapped_column(Float)
    rank: Mapped[int | None] = mapped_column(Integer)
    # The winning window's character span in the original document, and how many windows were read.
    chunks: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    best_chunk: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_start: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    best_end: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # [[start, end, raw_score], ...] of every window, kept only for documents of several windows.
    windows: Mapped[list[list[float]] | None] = mapped_column(JSON)
