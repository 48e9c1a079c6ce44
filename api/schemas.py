"""The public contract of the HTTP API (OpenAPI at /docs is generated from these models).
Requests are worker.spec's models, shared with the CLI; responses are defined here."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from worker.lifecycle import JobStatus, Priority
from worker.spec import DocumentSpec, JobOptions, JobSpec, QuerySpec

__all__ = ["DocumentSpec", "JobOptions", "JobSpec", "QuerySpec"]


class Progress(BaseModel):
    total: int = Field(description="Pairs in the job.")
    done: int = Field(description="Pairs scored.")
    failed: int = Field(description="Pairs whose batch failed.")
    pairs_per_second: float | None = Field(
        description="While running: pairs scored in the last 60 s divided by the seconds of that window"
        " the job ran (the whole run's average when no batch finished in it); once finished: the whole"
        " run's average. Null before the first batch is scored."
    )
    eta_seconds: float | None = Field(
        description="Pairs left divided by pairs_per_second; 0 once finished, null while the rate is."
    )


class JobOut(BaseModel):
    id: str
    status: JobStatus
    model: str
    progress: Progress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    options: dict[str, Any]
    priority: Priority
    collection: str | None = Field(description="The collection a job reranks against, if any.")


class LineError(BaseModel):
    line: int = Field(description="1-based line number in the upload.")
    field: str | None = Field(description="The field at fault, e.g. text.")
    error: str


class CollectionOut(BaseModel):
    id: str
    name: str | None
    documents: int = Field(description="Documents stored.")
    error_count: int = Field(description="Lines rejected.")
    errors: list[LineError] = Field(description="The first 100 rejected lines.")
    created_at: datetime


class JobList(BaseModel):
    jobs: list[JobOut]


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
    chunk_scores: list[ChunkScore] | None = Field(
        None, description="Every window's span and raw score (with ?include_chunks=true)."
    )


class ResultsPage(BaseModel):
    results: list[ResultOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last.")


class ErrorDetail(BaseModel):
    field: str | None
    message: str


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    field: str | None = Field(description="The input at fault, e.g. queries.0.documents.2.id.")
    details: list[ErrorDetail] = Field(default_factory=list)


class Health(BaseModel):
    status: str
    database: str
    broker: str
