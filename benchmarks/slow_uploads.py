"""Job polling (GET /v1/jobs/{id}) through `rerankq api` on PostgreSQL, with no uploads running
(the baseline) and while 16 clients upload collections at 1 byte a second. Prints p50/p99 of each,
the ratio of the p99s, the polls that failed, and the most database connections seen `idle in
transaction` for over a second meanwhile (an upload holding a connection while it waits for bytes
shows up there; a poll's own transaction lasts milliseconds).

    python -m benchmarks.slow_uploads --requests 300

Creates (and drops) the database `rerankq_slow_bench`; no worker is needed (the polled job stays
queued; it is stored directly, so nothing is put on the broker)."""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from benchmarks.common import add_server_options, benchmark_parser, positive
from benchmarks.killable import free_port
from benchmarks.services import RERANKQ, admin_headers, drop_database, fresh_database, wait_listening
from worker.config import Settings
from worker.db import session_scope
from worker.service import submit_job
from worker.spec import JobSpec

DATABASE = "rerankq_slow_bench"


class Trickle(threading.Thread):
    """One client uploading a collection one byte per second until told to stop."""

    def __init__(self, port: int, headers: dict[str, str], stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stop = stop
        self.socket = socket.create_connection(("127.0.0.1", port))
        head = "POST /v1/collections HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-ndjson\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.socket.sendall(f"{head}Content-Length: 1000000\r\n\r\n".encode())

    def run(self) -> None:
        try:
            while not self.stop.wait(1.0):
                self.socket.sendall(b"{")
        except OSError:  # answered (an error) and closed by the API: this client is done
            pass
        self.socket.close()


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    return statistics.median(seconds) * 1000, statistics.quantiles(seconds, n=100)[98] * 1000


HELD = """SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'idle in transaction'
AND now() - state_change > interval '1 second'"""


@dataclass
class Polls:
    spent: list[float] = field(default_factory=list)  # seconds per poll, failed ones included
    failed: int = 0  # polls not answered 200 (e.g. a 500 after waiting for a pooled connection)
    held: int = 0  # most connections idle in transaction for over a second, seen between polls


def poll(client: httpx.Client, job_id: str, requests: int, database: str) -> Polls:
    polls = Polls()
    with psycopg.connect(database, autocommit=True) as watch:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                ok = client.get(f"/v1/jobs/{job_id}").status_code == 200
            except httpx.TransportError:  # the connection was dropped
                ok = False
            polls.spent.append(time.perf_counter() - started)
            polls.failed += not ok
            row = watch.execute(HELD, (DATABASE,)).fetchone()
            polls.held = max(polls.held, row[0] if row else 0)
    return polls


def stored_job(url: str) -> str:
    """A small job stored as the API would store it, left queued (no broker involved)."""
    spec = JobSpec.model_validate(
        {"queries": [{"id": "q", "text": "polled", "documents": [{"id": "d", "text": "a document"}]}]}
    )
    with session_scope(url) as session:
        return submit_job(session, spec, Settings(database_url=url, model="bench")).id


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--requests", type=positive, default=300, help="timed polls per scenario")
    parser.add_argument("--uploads", type=positive, default=16, help="clients uploading at 1 byte/s")
    add_server_options(parser)
    args = parser.parse_args()

    url = fresh_database(args.postgres, DATABASE)
    env = {**os.environ, "RERANK_DATABASE_URL": url, "RERANK_QUEUE": f"bench-{os.getpid()}"}
    subprocess.run([*RERANKQ, "migrate"], env=env, check=True, capture_output=True)
    job_id = stored_job(url)
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="rerankq-slow-")) / "api.log"
    api = subprocess.Popen(
        [*RERANKQ, "api", "--port", str(port)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    stop = threading.Event()
    try:
        headers = admin_headers(env)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, headers=headers)
        wait_listening(client)
        watch = f"{args.postgres}/{DATABASE}"
        poll(client, job_id, 20, watch)  # warm up
        quiet = poll(client, job_id, args.requests, watch)
        trickles = [Trickle(port, headers, stop) for _ in range(args.uploads)]
        for trickle in trickles:
            trickle.start()
        time.sleep(3)  # every upload has begun and is waiting for its next byte
        loaded = poll(client, job_id, args.requests, watch)
    finally:
        stop.set()
        api.terminate()
        api.wait(30)
        drop_database(args.postgres, DATABASE)

    print(
        f"GET /v1/jobs/{{id}}, {args.requests} polls per scenario"
        " (a shared 2-core machine: absolute numbers are noisy)"
    )
    print("| scenario | p50 ms | p99 ms | failed polls | connections idle in transaction > 1 s (max) |")
    print("|---|---|---|---|---|")
    for name, polls in (("no uploads (baseline)", quiet), (f"{args.uploads} uploads at 1 byte/s", loaded)):
        p50, p99 = percentiles(polls.spent)
        print(f"| {name} | {p50:.1f} | {p99:.1f} | {polls.failed} | {polls.held} |")
    ratio = percentiles(loaded.spent)[1] / percentiles(quiet.spent)[1]
    print(f"p99 with slow uploads / p99 without: {ratio:.2f}x (target: p99 under load <= 1000 ms)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
