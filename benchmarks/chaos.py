"""An overnight job under every ordinary fault: the same job run twice on the same servers, once
undisturbed (the baseline) and once while every 20 s a worker that is up is SIGKILLed and replaced
(the workers take turns; one still starting is spared that round), Redis is
SIGKILLed and restarted without persistence once, and PostgreSQL is stopped (immediate shutdown) for
30 s. Both must complete with every pair's result exactly once; prints both times, the ratio, and
how long work took to resume after each server came back.

    python -m benchmarks.chaos --pairs 100000

Starts its own redis-server and PostgreSQL cluster (benchmarks.killable), the API, a reconciler and
CPU workers, all with the default lease, heartbeat and reconcile settings."""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from benchmarks.common import add_model_options, benchmark_parser, make_pairs, positive, random_model
from benchmarks.killable import PostgresServer, RedisServer, free_port
from benchmarks.pipeline import job_body
from benchmarks.services import RERANKQ, admin_headers


@dataclass
class Cluster:
    """The API, a reconciler and `workers` CPU workers on one database and broker."""

    env: dict[str, str]
    workers: int
    logs: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_files: dict[str, Path] = field(default_factory=dict)
    replaced: int = 0

    def start(self) -> httpx.Client:
        subprocess.run([*RERANKQ, "migrate"], env=self.env, check=True, capture_output=True)
        self._spawn("api", ["api", "--port", str(self.port)])
        self._spawn("reconciler", ["reconcile"])
        for i in range(self.workers):
            self._spawn(f"worker{i}", ["worker", "--device", "cpu"])
        headers = admin_headers(self.env)
        client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30, headers=headers)
        while True:
            try:
                if len(client.get("/healthz").json()["workers"]) >= self.workers:
                    return client
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.5)

    def _spawn(self, name: str, args: list[str]) -> None:
        self.log_files[name] = self.logs / f"{name}-{self.replaced}.log"
        log = self.log_files[name].open("w")
        self.processes[name] = subprocess.Popen([*RERANKQ, *args], env=self.env, stdout=log, stderr=log)

    def replace_worker(self, i: int) -> bool:
        """SIGKILL worker `i` (as the OOM killer would) and start another in its place; only once it
        is up and taking work (False if it is still starting: on a loaded machine a replacement can
        take longer to start than the kill interval, and killing it then would test nothing)."""
        name = f"worker{i}"
        if " ready." not in self.log_files[name].read_text(errors="replace"):
            return False
        self.processes[name].kill()
        self.processes[name].wait()
        self.replaced += 1
        self._spawn(name, ["worker", "--device", "cpu"])
        return True

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


@dataclass
class Run:
    seconds: float
    resumed: dict[str, float]  # fault -> seconds from the server's return to the next scored batch
    kills: int


def poll(client: httpx.Client, job_id: str) -> dict[str, object] | None:
    """The job as the API reports it; None while the API cannot answer (its database is down)."""
    try:
        response = client.get(f"/v1/jobs/{job_id}")
    except httpx.TransportError:
        return None
    return response.json() if response.status_code == 200 else None


def run_job(args: argparse.Namespace, redis: RedisServer, postgres: PostgresServer, faults: bool) -> Run:
    name = "chaos_faults" if faults else "chaos_baseline"
    env = {
        **os.environ,
        "RERANK_DATABASE_URL": postgres.fresh_database(name),
        "RERANK_BROKER_URL": redis.url,
        "RERANK_MODEL": str(random_model(args.cache, "tiny")),
        "RERANK_QUEUE": name,
        "RERANK_TASK_PAIRS": str(args.task_pairs),
        "OMP_NUM_THREADS": str(args.threads),
    }
    cluster = Cluster(env, args.workers, Path(tempfile.mkdtemp(prefix=f"rerankq-{name}-")))
    client = cluster.start()
    try:
        started = time.monotonic()
        job = client.post("/v1/jobs", json=job_body(make_pairs(args.pairs, seed=9))).json()
        run = watch(args, cluster, client, str(job["id"]), redis, postgres, faults, started)
        check_exactly_once(env["RERANK_DATABASE_URL"], str(job["id"]), args.pairs)
        print(f"{name}: {run.seconds:.1f} s, logs in {cluster.logs}", flush=True)
        return run
    finally:
        cluster.stop()


def watch(
    args: argparse.Namespace,
    cluster: Cluster,
    client: httpx.Client,
    job_id: str,
    redis: RedisServer,
    postgres: PostgresServer,
    faults: bool,
    started: float,
) -> Run:
    """Poll the job until it finishes, firing the faults on schedule; the run's timings."""
    next_kill = args.kill_every
    back_at: dict[str, float] = {}  # fault -> when its server was back
    done_when_back: dict[str, int] = {}  # fault -> pairs done at the first poll after that
    resumed: dict[str, float] = {}
    redis_done = postgres_down = postgres_done = False
    kills = next_worker = 0
    while True:
        now = time.monotonic() - started
        if faults and now >= next_kill:
            kills += cluster.replace_worker(next_worker % args.workers)
            next_worker, next_kill = next_worker + 1, next_kill + args.kill_every
        if faults and not redis_done and now >= args.redis_at:
            redis.kill()
            time.sleep(1)
            redis.start()
            redis_done, back_at["redis"] = True, time.monotonic() - started
        if faults and not postgres_down and now >= args.postgres_at:
            postgres.stop()
            postgres_down = True
        if postgres_down and not postgres_done and now >= args.postgres_at + args.outage:
            postgres.start()
            postgres_done, back_at["postgres"] = True, time.monotonic() - started
        job = poll(client, job_id)
        if job is not None:
            done = int(job["progress"]["done"])  # type: ignore[index]
            for fault, at in back_at.items():  # the first batch scored after the server came back
                if done > done_when_back.setdefault(fault, done):
                    resumed.setdefault(fault, time.monotonic() - started - at)
            if job["status"] in ("completed", "failed", "cancelled"):
                assert job["status"] == "completed", job
                return Run(time.monotonic() - started, resumed, kills)
        time.sleep(0.5)


def check_exactly_once(database_url: str, job_id: str, pairs: int) -> None:
    """Every pair scored once, counters right, no batch failed."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as db:
        row = db.execute(
            "SELECT total_pairs, done_pairs, failed_pairs, "
            "(SELECT count(*) FROM results WHERE job_id = %(id)s), "
            "(SELECT count(DISTINCT document_id) FROM results WHERE job_id = %(id)s), "
            "(SELECT count(*) FROM batches WHERE job_id = %(id)s AND status <> 'done') "
            "FROM jobs WHERE id = %(id)s",
            {"id": job_id},
        ).fetchone()
    assert row == (pairs, pairs, 0, pairs, pairs, 0), row


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--pairs", type=positive, default=100_000)
    parser.add_argument("--workers", type=positive, default=2)
    parser.add_argument("--threads", type=positive, default=1, help="torch threads per worker")
    parser.add_argument("--task-pairs", type=positive, default=256)
    parser.add_argument("--kill-every", type=float, default=20, help="seconds between worker SIGKILLs")
    parser.add_argument("--redis-at", type=float, default=30, help="seconds into the job Redis is killed")
    parser.add_argument("--postgres-at", type=float, default=50, help="seconds into the job PostgreSQL stops")
    parser.add_argument("--outage", type=float, default=30, help="seconds PostgreSQL stays down")
    add_model_options(parser)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a stopped run still removes its servers
    redis, postgres = RedisServer(), PostgresServer()
    try:
        baseline = run_job(args, redis, postgres, faults=False)
        chaos = run_job(args, redis, postgres, faults=True)
    finally:
        postgres.remove()
        redis.kill()
    print("| run | pairs | submit -> completed | faults | × baseline |")
    print("| --- | ---: | ---: | --- | ---: |")
    print(f"| no faults (baseline) | {args.pairs:,} | {baseline.seconds:.1f} s | none | 1.00 |")
    resumed = ", ".join(
        f"work resumed {s:.1f} s after {fault} was back" for fault, s in chaos.resumed.items()
    )
    print(
        f"| faults | {args.pairs:,} | {chaos.seconds:.1f} s | {chaos.kills} worker SIGKILLs, Redis restarted"
        f" without persistence, PostgreSQL down {args.outage:.0f} s; {resumed} "
        f"| {chaos.seconds / baseline.seconds:.2f} |"
    )


if __name__ == "__main__":
    main()
