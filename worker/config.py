"""Settings: the one place rerankq's defaults live (environment variables prefixed RERANK_)."""

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Dtype = Literal["auto", "fp32", "fp16", "bf16"]
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def parse_device(device: str) -> str:
    """A device as torch names it; `gpu` (and `gpu:N`) is read as `cuda` (`cuda:N`)."""
    name = device.strip().lower()
    name = "cuda" + name[3:] if name.startswith("gpu") else name
    if not DEVICE.fullmatch(name):
        raise ValueError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N (gpu means cuda)")
    return name


def psycopg_url(url: str) -> str:
    """`postgresql://` and `postgres://`, the forms everyone copies, on psycopg 3 (the driver
    rerankq installs; SQLAlchemy would look for psycopg2)."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


class Settings(BaseSettings):
    """Every knob of API, worker and CLI; read once per process from the environment."""

    model_config = SettingsConfigDict(env_prefix="RERANK_", extra="ignore")

    database_url: str = Field("sqlite:///./rerankq.db", description="SQLAlchemy URL of the job store.")
    broker_url: str = Field("redis://127.0.0.1:6379/0", description="Celery broker (Redis).")
    model: str = Field("BAAI/bge-reranker-v2-m3", description="Hub id or local directory of the reranker.")
    model_name: str | None = Field(
        None,
        description="The name jobs record and workers serve the model under (unset: RERANK_MODEL as"
        " given); the hub id of a local copy, so that jobs name one model whichever way it is loaded.",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    dtype: Dtype = Field("auto", description="auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16")
    trace: bool = Field(
        True,
        description="On the CPU, run the model as a torch.jit.trace checked against the eager model"
        " (its forward passes leave the interpreter free for the worker's other batch); eager when"
        " tracing fails or disagrees, and always on a GPU.",
    )
    max_length: int = Field(1024, ge=16, le=8192, description="Default tokens per (query, document) pair.")
    batch_tokens: int = Field(16384, ge=256, description="Padded tokens per forward pass.")
    task_seconds: float = Field(
        0.5,
        ge=0,
        description="Model time a Celery task (one batch row) aims at: a new job's batches are cut to"
        " this many seconds of the slowest live worker's measured speed, so a synchronous request waits"
        " about this long behind an overnight batch on any model and device (0: RERANK_TASK_PAIRS each).",
    )
    task_pairs: int = Field(
        256,
        ge=1,
        description="Pairs per task while no live worker of the job's model has measured its speed"
        " (and always with RERANK_TASK_SECONDS=0).",
    )
    task_max_pairs: int = Field(
        4096, ge=1, description="Most pairs in a task cut by time, however fast the model."
    )
    queue: str = Field("rerank", description="Celery queue that carries rerank work.")
    worker_batches: int = Field(
        2,
        ge=1,
        le=8,
        description="Tasks a worker holds at once: the next batch is read and tokenized, and the last"
        " one's results written, while one is on the model (1: one at a time).",
    )
    max_attempts: int = Field(3, ge=1, description="Deliveries of one batch before it is marked failed.")
    max_document_chars: int = Field(200_000, ge=1, description="Longest document accepted (characters).")
    max_windows: int = Field(128, ge=1, description="Windows scored per document; later text is not read.")
    max_request_bytes: int = Field(
        64 * 2**20, ge=1024, description="Largest JSON body and JSONL line (413 above)."
    )
    max_upload_bytes: int = Field(
        4 * 2**30, ge=1024, description="Largest streamed upload (a JSONL job or collection; 413 above)."
    )
    max_json_depth: int = Field(
        32, ge=4, le=512, description="Deepest nesting of a JSON body's arrays and objects (422 deeper)."
    )
    body_read_timeout: float = Field(
        30, gt=0, description="Seconds a request body may send nothing before it is answered 408."
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins whose pages may call the API from a browser (empty: none).",
    )
    tenant_queued_batches: int = Field(
        8,
        ge=1,
        description="Batches of one tenant (per model and priority) on the queue at once: tenants take"
        " turns, and a tenant's jobs take turns within its share.",
    )
    low_priority_pairs: int = Field(
        100_000, ge=1, description="Jobs over this many pairs default to low priority."
    )
    visibility_timeout: int = Field(
        3600, ge=1, description="Seconds before Redis re-delivers an unacked task."
    )
    sync_max_documents: int = Field(
        1000, ge=1, description="Most documents of one synchronous rerank request (Cohere's own limit)."
    )
    sync_timeout: float = Field(
        60.0, gt=0, description="Seconds a synchronous rerank request waits for its job (504 after)."
    )
    webhook_secret: str = Field("", description="HMAC-SHA256 key of X-Rerankq-Signature (empty: unsigned).")
    cursor_secret: str = Field(
        "",
        description="HMAC-SHA256 key of results cursors (empty: a random key per API process, so a"
        " cursor ends with its process; set one when several API processes serve the same database).",
    )
    webhook_max_attempts: int = Field(8, ge=1, description="Tries of one webhook delivery before giving up.")
    webhook_backoff: float = Field(
        2.0, gt=0, description="Seconds before the first retry of a webhook; doubled after each failure."
    )
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds one webhook POST may take.")
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of a worker's Prometheus metrics (unset: none)."
    )
    lease_seconds: float = Field(
        15,
        gt=0,
        description="Seconds a batch claim lasts; renewed while scoring, requeued once it lapses.",
    )
    heartbeat_seconds: float = Field(
        10, gt=0, description="How often a worker reports itself to the database."
    )
    worker_timeout: float = Field(
        45, gt=0, description="Seconds without a heartbeat after which a worker is no longer counted live."
    )
    reconcile_seconds: float = Field(5, gt=0, description="How often `rerankq reconcile` checks the jobs.")
    stall_seconds: float = Field(
        120,
        gt=0,
        description="A job with work left and no batch scored for this long reports itself stalled.",
    )
    database_retry_seconds: float = Field(
        600, gt=0, description="How long a worker retries a batch while the database is unreachable."
    )

    auth: bool = Field(True, description="Require an API key (off: a trusted single-user setup).")
    tenant_max_queued_pairs: int = Field(
        5_000_000, ge=0, description="Unfinished pairs one tenant may have queued (429 above; 0: no limit)."
    )
    tenant_requests_per_minute: int = Field(
        3000, ge=0, description="Requests one tenant may make per minute (429 above; 0: no limit)."
    )
    idempotency_hours: float = Field(
        24, gt=0, description="How long an Idempotency-Key is remembered (a retry gets the same object)."
    )

    beat_seconds: float = Field(
        60, gt=0, description="How often `rerankq beat` has a worker submit the scheduled runs that are due."
    )
    retention_days: float = Field(
        0, ge=0, description="Finished jobs are deleted this many days after they finish (0: kept)."
    )

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def served_model(self) -> str:
        """The model's name in jobs, queues and heartbeats: RERANK_MODEL_NAME, else RERANK_MODEL."""
        return self.model_name or self.model

    @property
    def model_aliases(self) -> list[str]:
        """Every name a worker of these settings serves: its served name, and RERANK_MODEL as given
        (jobs submitted where RERANK_MODEL_NAME was not set name that)."""
        return list(dict.fromkeys([self.served_model, self.model]))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        return psycopg_url(url)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        return parse_device(device)


@lru_cache
def get_settings() -> Settings:
    """The process-wide Settings, read from the environment on first use."""
    return Settings()
