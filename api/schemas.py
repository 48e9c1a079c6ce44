"""The public contract of the HTTP API (OpenAPI at /docs is generated from these models).
Requests are worker.spec's models, shared with the CLI; responses are defined here."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from worker.models import JobStatus
from worker.spec import DocumentSpec, JobOptions, JobSpec, QuerySpec

__all__ = ["DocumentSpec", "JobOptions", "JobSpec", "QuerySpec"]


class Progress(BaseModel):
    total: int = Field(description="Pairs in the job.")
    done: int = Field(description="Pairs scored.")
    failed: int = Field(description="Pairs whose batch failed.")
    pairs_per_second: float | None = Field(description="Scoring rate since the job started.")
    eta_seconds: float | None = Field(description="Seconds until every pair is scored, at that rate.")


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


class JobList(BaseModel):
    jobs: list[JobOut]


class ResultOut(BaseModel):
    query_id: str
    document_id: str
    rank: int = Field(description="1 = best, per query.")
    raw_score: float = Field(description="The model's logit.")
    score: float = Field(description="sigmoid(raw_score), or raw_score when options.normalize is false.")
    relevant: bool = Field(description="sigmoid(raw_score) > options.threshold.")


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
