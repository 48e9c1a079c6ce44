"""Real rerankq servers for the end-to-end benchmarks: a fresh PostgreSQL database, `rerankq api`
and CPU workers as subprocesses, stopped on exit."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import redis

from benchmarks.killable import free_port

RERANKQ = [sys.executable, "-m", "worker.cli"]


def fresh_database(server: str, name: str) -> str:
    """Drop and create database `name` on `server`; its SQLAlchemy URL."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}".replace("postgresql://", "postgresql+psycopg://")


def drop_database(server: str, name: str) -> None:
    """Drop database `name` on `server` (a benchmark leaves none behind)."""
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def scratch_database(server: str, name: str) -> Iterator[str]:
    """A fresh database `name` on `server` (its SQLAlchemy URL), dropped on the way out."""
    url = fresh_database(server, name)
    try:
        yield url
    finally:
        drop_database(server, name)


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory of a process (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def admin_headers(env: dict[str, str]) -> dict[str, str]:
    """A new admin key on the benchmark's database (`rerankq keys create`), as request headers."""
    created = subprocess.run(
        [*RERANKQ, "keys", "create", "--tenant", "bench", "--admin"], env=env, check=True, capture_output=True
    )
    return {"Authorization": f"Bearer {created.stdout.decode().strip().splitlines()[-1]}"}


@contextmanager
def services(
    env: dict[str, str], workers: int, worker_threads: int, device: str = "cpu"
) -> Iterator[tuple[httpx.Client, int]]:
    """Migrate, start the API and `workers` workers on `device` (each with `worker_threads` torch
    threads); yield an HTTP client of the API and the API's process id. The queue is this
    process's own unless `env` names one (two stacks side by side); its keys in Redis are deleted
    when the stack stops, and the processes' logs too unless the body failed (they say why)."""
    env = {**os.environ, "RERANK_QUEUE": f"bench-{os.getpid()}", **env}
    subprocess.run([*RERANKQ, "migrate"], env=env, check=True, capture_output=True)
    port = free_port()
    logs = Path(tempfile.mkdtemp(prefix="rerankq-bench-"))
    api_log = (logs / "api.log").open("w")
    api = subprocess.Popen([*RERANKQ, "api", "--port", str(port)], env=env, stdout=api_log, stderr=api_log)
    pool = []
    for i in range(workers):
        log = (logs / f"worker{i}.log").open("w")
        pool.append(
            subprocess.Popen(
                [*RERANKQ, "worker", "--device", device, "--loglevel", "info"],
                env={**env, "OMP_NUM_THREADS": str(worker_threads)},
                stdout=log,
                stderr=log,
            )
        )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600, headers=admin_headers(env))
        deadline = time.monotonic() + 300  # a loaded machine imports torch slowly
        while not all(" ready." in (logs / f"worker{i}.log").read_text() for i in range(workers)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready; see {logs}")
            time.sleep(0.2)
        wait_listening(client)
        yield client, api.pid
    finally:
        for process in [api, *pool]:
            process.terminate()
        for process in [api, *pool]:
            process.wait(30)
        delete_queue_keys(env["RERANK_BROKER_URL"], env["RERANK_QUEUE"])
    shutil.rmtree(logs)


def delete_queue_keys(redis_url: str, queue: str) -> None:
    """Delete, by key, every Redis key naming `queue` (its lists and kombu's bindings): a shared
    Redis is left as found, other queues' keys untouched (no FLUSH)."""
    with redis.Redis.from_url(redis_url) as client:
        if keys := list(client.scan_iter(match=f"*{queue}*", count=1000)):
            client.delete(*keys)


def wait_listening(client: httpx.Client) -> None:
    """Return once the API of `client` answers (its process was just started)."""
    while True:
        try:
            client.get("/healthz")
            return
        except httpx.TransportError:
            time.sleep(0.2)


def wait_for(client: httpx.Client, job_id: str) -> dict[str, object]:
    """Wait until a job finishes, by long polls (GET ?wait=): told at once, and on a small machine
    the wait takes no CPU from the worker (polls five times a second cost the tiny model's
    pipeline 5-10 % of its speed on 2 cores)."""
    while True:
        job: dict[str, object] = client.get(f"/v1/jobs/{job_id}", params={"wait": 60}).json()
        if job["status"] in ("completed", "failed", "cancelled"):
            return job


def wait_for_speeds(client: httpx.Client, queue: str = "", timeout: float = 120) -> None:
    """Until every live worker (of `queue`, when given) has published its speed (its first
    heartbeat after a batch)."""
    deadline = time.monotonic() + timeout
    while True:
        listed = client.get("/v1/workers").json()["workers"]
        workers = [w for w in listed if w["live"] and w["queue"].startswith(f"{queue}." if queue else "")]
        if workers and all(w["characters_per_second"] for w in workers):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no speed from every worker in {timeout:.0f}s: {workers}")
        time.sleep(0.5)
