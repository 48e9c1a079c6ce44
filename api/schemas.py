"""The public contract of the HTTP API (OpenAPI at /docs is generated from these models).
Requests are worker.spec's models, shared with the CLI; a job, a page of results and a collection
are worker.views' models, which the service returns; the rest is defined here."""

from typing import Any

from pydantic import BaseModel, Field

from worker.evaluation import Evaluation, QueryEvaluation, Scores
from worker.judgements import JudgementsOut
from worker.schedule_store import ScheduleOut, ScheduleRunOut
from worker.spec import DocumentSpec, JobOptions, JobSpec, JudgementSpec, QuerySpec, ScheduleSpec
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
    "Evaluation",
    "JobOptions",
    "JobOut",
    "JobSpec",
    "JudgementSpec",
    "JudgementsOut",
    "LineError",
    "Progress",
    "QueryEvaluation",
    "QuerySpec",
    "ResultOut",
    "ResultsPage",
    "ScheduleOut",
    "ScheduleRunOut",
    "ScheduleSpec",
    "Scores",
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


# What any route of the JSON API may be refused with, in ErrorOut's shape: its own errors (404, 409,
# 422, 503), the key's (no valid key 401, a quota spent 429) and those of the framework and the
# limits (a malformed body 400, a stalled one 408, one too large 413, of a media type the route does
# not read 415).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 404, 408, 409, 413, 415, 422, 429, 503)
}


class WorkerList(BaseModel):
    workers: list[WorkerOut]


class Health(BaseModel):
    status: str
    database: str
    broker: str
    workers: list[WorkerOut] = Field(description="Live workers (from their heartbeats).")


class ScheduleList(BaseModel):
    schedules: list[ScheduleOut]
