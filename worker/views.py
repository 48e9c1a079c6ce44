"""What the service hands back: a job, a page of its results, a collection. Each is built here,
once, from what the store read, and is the HTTP API's response model as it is: a new field is
added in the store and here, nowhere else."""

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from worker.lifecycle import FINISHED, JobStatus, Priority
from worker.models import Batch, Collection, CollectionDocument, Job, aware
from worker.spec import JobOptions


class Progress(BaseModel):
    total: int = Field(description="Pairs in the job.")
    done: int = Field(description="Pairs scored (those from the score cache included).")
    cached: int = Field(description="Of done: pairs whose scores were reused from the score cache.")
    failed: int = Field(description="Pairs whose batch failed.")
    cancelled: int = Field(
        description="Pairs left unscored by a cancel (done + failed + cancelled = total once finished)."
    )
    pairs_per_second: float | None = Field(
        description="While running: pairs scored in the last 60 s divided by the seconds of that minute"
        " the job ran (the whole run's average when no batch finished in it); once finished: the whole"
        " run's average. Null before the first batch is scored."
    )
    eta_seconds: float | None = Field(
        description="Pairs left divided by pairs_per_second; 0 once finished, null while the rate is."
    )


class WebhookOut(BaseModel):
    attempts: int = Field(description="POSTs to options.callback_url so far.")
    last_error: str | None = Field(description="Why the last attempt failed; null once delivered.")
    delivered_at: datetime | None = Field(description="When the receiver answered 2xx.")


class JobOut(BaseModel):
    id: str
    status: JobStatus
    stalled: bool = Field(
        description="Work is left and no batch was scored for RERANK_STALL_SECONDS (eta_seconds is null)."
    )
    stalled_reason: str | None = Field(
        description="Why: no live worker serves the job's model, the broker is unreachable, or the"
        " workers are busy with other jobs."
    )
    model: str
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    options: JobOptions
    effective_max_length: int | None = Field(
        description="Tokens per pair the model reads: options.max_length, cut to the model's own limit"
        " (its position embeddings, or its tokenizer's model_max_length if lower). Recorded by the"
        " worker when it scores the job's first batch; null before."
    )
    priority: Priority
    collection: str | None = Field(description="The collection a job reranks against, if any.")
    collection_version: int | None = Field(
        description="The collection's version the job's pairs were taken from (when it was planned)."
    )
    synchronous: bool = Field(description="Made by a rerank route (/v2/rerank, /v1/rerank, /rerank).")
    webhook: WebhookOut | None = Field(description="Delivery to options.callback_url, if one was given.")
    rerun_of: str | None = Field(None, description="The job this one reran (a rerun or a schedule's run).")

    @classmethod
    def from_row(cls, job: Job, rate: float | None, stalled_reason: str | None = None) -> "JobOut":
        """A job as a client sees it, with its rate (pairs per second) and the ETA that follows
        (none while it is stalled, for `stalled_reason`)."""
        eta: float | None = None
        remaining = job.total_pairs - job.done_pairs - job.failed_pairs
        if rate is not None and stalled_reason is None:
            eta = 0.0 if job.status in FINISHED else remaining / rate
        progress = Progress(
            total=job.total_pairs,
            done=job.done_pairs,
            cached=job.cached_pairs,
            failed=job.failed_pairs,
            cancelled=remaining if job.status == JobStatus.cancelled else 0,
            pairs_per_second=rate,
            eta_seconds=eta,
        )
        return cls(
            id=job.id,
            status=JobStatus(job.status),
            stalled=stalled_reason is not None,
            stalled_reason=stalled_reason,
            model=job.model,
            progress=progress,
            created_at=aware(job.created_at),
            started_at=aware(job.started_at),
            finished_at=aware(job.finished_at),
            error=job.error,
            options=JobOptions.model_validate(job.options),
            effective_max_length=job.effective_max_length,
            priority=Priority(job.priority),
            collection=job.collection_id,
            collection_version=job.collection_version,
            synchronous=job.synchronous,
            rerun_of=job.rerun_of,
            webhook=None
            if job.options.get("callback_url") is None
            else WebhookOut(
                attempts=job.webhook_attempts,
                last_error=job.webhook_error,
                delivered_at=aware(job.webhook_delivered_at),
            ),
        )


class WorkerOut(BaseModel):
    name: str = Field(description="host-pid-tag of the worker process.")
    model: str = Field(description="The name it serves the model under (RERANK_MODEL_NAME or RERANK_MODEL).")
    model_path: str = Field(description="Where it loaded the model from (RERANK_MODEL).")
    device: str
    dtype: str
    queue: str = Field(description="The queues of the batches it takes (one per name of its model).")
    started_at: datetime
    fingerprint: str | None = Field(description="SHA-256 of the model's weights as loaded.")
    last_seen: datetime = Field(description="Its latest heartbeat.")
    live: bool = Field(description="Seen within RERANK_WORKER_TIMEOUT seconds.")
    characters_per_second: float | None = Field(
        description="Document characters its latest batches put through the model a second (forward"
        " passes only; null before its first batch): new jobs' tasks are cut to RERANK_TASK_SECONDS of"
        " the slowest live worker's."
    )


class LineError(BaseModel):
    line: int = Field(description="1-based line number in the upload.")
    field: str | None = Field(description="The field at fault, e.g. text.")
    error: str

    def explain(self) -> str:
        """`field: why`, or `why` when no field is at fault (e.g. invalid JSON)."""
        return f"{self.field}: {self.error}" if self.field else self.error


class CollectionOut(BaseModel):
    id: str
    name: str | None
    documents: int = Field(description="Documents stored.")
    error_count: int = Field(description="Lines rejected.")
    errors: list[LineError] = Field(description="The first 100 rejected lines.")
    created_at: datetime
    version: int = Field(description="1 when uploaded; moves on by one with each update that changes it.")
    updated_at: datetime | None = Field(description="When it was last updated (PATCH).")

    @classmethod
    def from_row(cls, collection: Collection) -> "CollectionOut":
        return cls(
            id=collection.id,
            name=collection.name,
            version=collection.version,
            updated_at=aware(collection.updated_at),
            documents=collection.documents,
            error_count=collection.error_count,
            errors=[LineError.model_validate(error) for error in collection.errors],
            created_at=aware(collection.created_at),
        )


class CollectionUpdateOut(BaseModel):
    """What one update (PATCH) did: its lines by outcome, and the version it made."""

    id: str
    version: int = Field(description="The collection's version after this update.")
    documents: int = Field(description="Documents in that version.")
    added: int = Field(description="Lines that added a document.")
    replaced: int = Field(description="Lines that changed a document's text or metadata.")
    deleted: int = Field(description="Lines that deleted a document.")
    unchanged: int = Field(
        description="Lines identical to the stored document (the version did not move for them)."
    )
    error_count: int = Field(description="Lines rejected.")
    errors: list[LineError] = Field(description="The first 100 rejected lines.")


class CacheOut(BaseModel):
    entries: int = Field(description="Pairs whose scores are kept.")
    oldest: datetime | None
    newest: datetime | None


class CachePruned(BaseModel):
    deleted: int = Field(description="Entries deleted.")


class CollectionList(BaseModel):
    collections: list[CollectionOut] = Field(description="Newest first.")


class DocumentOut(BaseModel):
    id: str
    text: str
    metadata: dict[str, Any] | None

    @classmethod
    def from_row(cls, document: CollectionDocument) -> "DocumentOut":
        return cls(id=document.client_id, text=document.text, metadata=document.meta)


class DocumentsPage(BaseModel):
    documents: list[DocumentOut] = Field(description="Ordered by id.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class BatchError(BaseModel):
    batch: int = Field(description="The batch's number in the job (0 = the longest pairs).")
    pairs: int
    attempts: int = Field(description="Deliveries of the batch to a worker.")
    error: str | None

    @classmethod
    def from_row(cls, batch: Batch) -> "BatchError":
        return cls(batch=batch.number, pairs=batch.pairs, attempts=batch.attempts, error=batch.error)


class BatchErrors(BaseModel):
    errors: list[BatchError] = Field(description="A job's failed batches, in planning order.")


def sigmoid(raw: float) -> float:
    """A raw logit as a 0..1 score (0 where exp would overflow)."""
    return 1.0 / (1.0 + math.exp(-raw)) if raw > -700 else 0.0


class QueryOut(BaseModel):
    id: str
    text: str


@dataclass(frozen=True)
class RankedRow:
    """One ranked result as the store reads it: client ids, the query's primary key (the cursor's
    first half) and the winning token window's span and text."""

    query_id: str
    query_pk: int
    query_truncated: bool
    document_id: str
    rank: int
    raw_score: float
    windows_read: int
    best_window: int
    best_start: int
    best_end: int
    best_text: str
    windows: list[list[float]] | None  # [[start, end, raw_score], ...] when more than one
    cached: bool  # reused from the score cache, not scored for this job
    metadata: dict[str, Any] | None  # the document's, as submitted or uploaded


class BestChunk(BaseModel):
    index: int = Field(description="Which window of the document won (0 = the first).")
    start: int = Field(description="Character offset of the window in the submitted text.")
    end: int = Field(description="End offset (exclusive): text == document.text[start:end].")
    text: str


class ChunkScore(BaseModel):
    index: int
    start: int
    end: int
    raw_score: float


class ResultOut(BaseModel):
    query_id: str
    document_id: str
    rank: int = Field(description="1 = best, per query.")
    raw_score: float = Field(description="The model's logit (the aggregate of its windows' logits).")
    score: float = Field(description="sigmoid(raw_score), or raw_score when options.normalize is false.")
    relevant: bool = Field(description="sigmoid(raw_score) > options.threshold.")
    chunks: int = Field(description="Windows the document was read as (1: it fit beside the query).")
    best_chunk: BestChunk
    query_truncated: bool = Field(description="The query was cut to 3/4 of max_length tokens.")
    cached: bool = Field(
        False, description="Reused from the score cache (same model, settings and texts), not scored again."
    )
    metadata: dict[str, Any] | None = Field(description="The document's metadata, as submitted.")
    chunk_scores: list[ChunkScore] | None = Field(
        None, description="Every window's span and raw score (with ?include_chunks=true)."
    )

    @classmethod
    def from_ranked(cls, row: RankedRow, options: JobOptions, include_windows: bool) -> "ResultOut":
        """A stored result scored as the job's options ask; every window's score when asked
        (left unset otherwise, so the response omits it)."""
        raw = row.raw_score
        probability = sigmoid(raw)
        best = BestChunk(index=row.best_window, start=row.best_start, end=row.best_end, text=row.best_text)
        result = cls(
            query_id=row.query_id,
            document_id=row.document_id,
            rank=row.rank,
            raw_score=raw,
            score=probability if options.normalize else raw,
            relevant=probability > options.threshold,
            chunks=row.windows_read,
            best_chunk=best,
            query_truncated=row.query_truncated,
            cached=row.cached,
            metadata=row.metadata,
        )
        if include_windows:
            windows = row.windows or [[row.best_start, row.best_end, raw]]
            result.chunk_scores = [
                ChunkScore(index=i, start=int(start), end=int(end), raw_score=score)
                for i, (start, end, score) in enumerate(windows)
            ]
        return result


class ResultsPage(BaseModel):
    results: list[ResultOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")
