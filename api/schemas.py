"""The public contract of the HTTP API (OpenAPI at /docs is generated from these models).
Requests are worker.spec's models, shared with the CLI; a job, a page of results and a collection
are worker.views' models, which the service returns; the rest is defined here."""

from pydantic import BaseModel, Field

from worker.spec import DocumentSpec, JobOptions, JobSpec, QuerySpec
from worker.views import (
    BatchErrors,
    BestChunk,
    CacheOut,
    CachePruned,
    ChunkScore,
    CollectionList,
    CollectionOut,
    CollectionUpdateOut,
    DocumentsPage,
    JobOut,
    LineError,
    Progress,
    ResultOut,
    ResultsPage,
    WorkerOut,
)

__all__ = [
    "BatchErrors",
    "BestChunk",
    "CacheOut",
    "CachePruned",
    "ChunkScore",
    "CollectionList",
    "CollectionOut",
    "CollectionUpdateOut",
    "DocumentSpec",
    "DocumentsPage",
    "JobOptions",
    "JobOut",
    "JobSpec",
    "LineError",
    "Progress",
    "QuerySpec",
    "ResultOut",
    "ResultsPage",
    "WorkerOut",
]


class JobList(BaseModel):
    jobs: list[JobOut]


class ErrorDetail(BaseModel):
    field: str | None
    message: str


class ErrorOut(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    field: str | None = Field(description="The input at fault, e.g. queries.0.documents.2.id.")
    details: list[ErrorDetail] = Field(default_factory=list)


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class Health(BaseModel):
    status: str
    database: str
    broker: str
    workers: list[WorkerOut] = Field(description="Live workers (from their heartbeats).")
