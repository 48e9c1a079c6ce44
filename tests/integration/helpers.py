"""Job bodies and polling shared by the integration tests."""

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.orm import Session

from benchmarks.heldout import Heldout
from worker import pipeline, service
from worker.config import Settings
from worker.engine import Reranker
from worker.pipeline import Limits
from worker.spec import JobSpec

TINY = Settings(model="tiny")  # what service.submit_job reads: the model name and the limits
EXAMPLES = Path(__file__).parents[2] / "examples"


def rerankq(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The `rerankq` command as a user runs it, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )  # what service.submit_job reads: the model name and the limits


def job_body(queries: int = 2, documents: int = 5, **options: Any) -> dict[str, Any]:
    """The same texts each time, scored each time: the score cache (on unless `cache=True` is
    passed) would otherwise answer a later test's job from an earlier one's."""
    return {
        "queries": [
            {
                "id": f"q{q}",
                "text": f"question {q} about pandas dataframes and missing values",
                "documents": [
                    {
                        "id": f"d{d}",
                        "text": f"passage {d}" + " about dropping rows with NaN" * (d % 7 + 1),
                        "metadata": {"n": d},
                    }
                    for d in range(documents)
                ],
            }
            for q in range(queries)
        ],
        "options": {"cache": False, **options},
    }


def heldout_job(data: Heldout, max_length: int) -> dict[str, Any]:
    """A job of the held-out queries and their candidates, scored as the engine alone scores them
    (no cleaning, no windows)."""
    return {
        "queries": [
            {
                "id": q.query_id,
                "text": q.text,
                "documents": [{"id": c.doc_id, "text": c.text} for c in q.candidates],
            }
            for q in data.queries
        ],
        "options": {"chunking": {"enabled": False}, "clean_html": False, "max_length": max_length},
    }


def job_spec(queries: int = 2, documents: int = 5, **options: Any) -> JobSpec:
    return JobSpec.model_validate(job_body(queries, documents, **options))


def wait_for(client: httpx.Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until the job finishes (a TestClient or a client of a served API)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not finish in {timeout}s: {job}")


def submit(session: Session, queries: int = 2, documents: int = 5, **options: object) -> str:
    return str(service.submit_job(session, job_spec(queries, documents, **options), TINY).id)


def run_all(
    session: Session, job_id: str, reranker: Reranker, task_pairs: int = 3, max_windows: int = 128
) -> None:
    pipeline.run_job(session, job_id, reranker, limits(task_pairs, max_windows=max_windows))


def limits(
    task_pairs: int = 3,
    queued_batches: int = 2,
    max_attempts: int = 3,
    max_windows: int = 128,
    lease_seconds: float = 30,
    worker_timeout: float = 45,
    task_seconds: float = 0,
    task_max_pairs: int = 4096,
) -> Limits:
    return Limits(
        task_seconds,
        task_pairs,
        task_max_pairs,
        queued_batches,
        max_attempts,
        max_windows,
        lease_seconds,
        worker_timeout,
    )


def results(session: Session, job_id: str, **kwargs: object) -> list[dict[str, object]]:
    return list(
        iter_pages(
            lambda c: service.results_page(session, job_id, cursor=c, **kwargs).model_dump(exclude_unset=True)
        )
    )


def iter_pages(fetch: Callable[[str | None], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every result row, following next_cursor from page to page (over the service or over HTTP)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page["results"]
        cursor = page["next_cursor"]
        if cursor is None:
            return


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """`app` served over real HTTP by uvicorn (clients such as the Cohere SDK need a real
    server); its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
