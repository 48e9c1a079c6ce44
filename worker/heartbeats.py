"""Worker heartbeats: each worker process writes what it serves (model, device, dtype, queue) and
when it was last seen, so the API can tell live workers from dead ones and a stalled job can say
that no worker serves its model."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, func, or_, select
from sqlalchemy.orm import Session

from worker.errors import is_connection_error
from worker.models import Worker, aware, utcnow
from worker.score_cache import ModelIdentity
from worker.store import dialect_insert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerInfo:
    """One worker process as it describes itself."""

    name: str
    model: str  # the name it serves
    model_path: str  # where it loaded the model from
    device: str
    dtype: str
    queue: str
    started_at: datetime
    fingerprint: str | None = None  # of the model's weights (Reranker.fingerprint)


@dataclass(frozen=True)
class SeenWorker:
    """A worker as the database last saw it."""

    info: WorkerInfo
    last_seen: datetime
    live: bool
    characters_per_second: float | None  # its speed (worker.speed), None before its first batch


def beat(session: Session, info: WorkerInfo, speed: float | None = None) -> None:
    """Record that `info`'s worker is alive now, at `speed` characters a second."""
    row = {**info.__dict__, "last_seen": utcnow(), "characters_per_second": speed}
    stmt = dialect_insert(session, Worker)
    written = {column: stmt.excluded[column] for column in row if column != "name"}
    session.execute(stmt.on_conflict_do_update(index_elements=[Worker.name], set_=written), [row])


def seen_workers(session: Session, timeout: float, within: timedelta = timedelta(days=1)) -> list[SeenWorker]:
    """Workers seen in the last `within`, newest first; live when seen in the last `timeout` seconds."""
    now = utcnow()
    rows = session.scalars(
        select(Worker).where(Worker.last_seen >= now - within).order_by(Worker.last_seen.desc())
    )
    return [
        SeenWorker(
            WorkerInfo(
                row.name,
                row.model,
                row.model_path or row.model,
                row.device,
                row.dtype,
                row.queue,
                aware(row.started_at),
                row.fingerprint,
            ),
            aware(row.last_seen),
            aware(row.last_seen) >= now - timedelta(seconds=timeout),
            row.characters_per_second,
        )
        for row in rows
    ]


def live_models(session: Session, timeout: float) -> set[str]:
    """The models some live worker serves, by name and by the path it loaded them from."""
    since = utcnow() - timedelta(seconds=timeout)
    rows = session.execute(
        select(Worker.model, Worker.model_path).where(Worker.last_seen >= since).distinct()
    )
    return {name for row in rows for name in row if name}


def _live_workers_of(model: str, timeout: float) -> tuple[ColumnElement[bool], ...]:
    """The conditions on a worker row: it serves `model` (by the name it serves it under or the
    path it loaded it from: it consumes both queues) and was seen in the last `timeout` seconds."""
    since = utcnow() - timedelta(seconds=timeout)
    return or_(Worker.model == model, Worker.model_path == model), Worker.last_seen >= since


def serving(session: Session, model: str, timeout: float) -> ModelIdentity | None:
    """What the live workers of `model` run, when they all serve it under one name, with the same
    weights in the same dtype (else None: no cache key fits every worker that may score the job)."""
    stmt = select(Worker.model, Worker.fingerprint, Worker.dtype).where(*_live_workers_of(model, timeout))
    seen = set(session.execute(stmt.distinct()).tuples())
    if len(seen) != 1:
        return None
    ((name, fingerprint, dtype),) = seen
    return None if fingerprint is None else ModelIdentity(name, fingerprint, dtype)


def slowest_speed(session: Session, model: str, timeout: float) -> float | None:
    """The lowest speed among the live workers of `model` that have measured one: a batch cut to
    it takes no longer than planned on whichever of them takes it."""
    stmt = select(func.min(Worker.characters_per_second)).where(*_live_workers_of(model, timeout))
    return session.execute(stmt).scalar_one()


class Heartbeat:
    """A daemon thread that beats every `every` seconds until stopped, with the worker's `speed`
    then; a database outage only skips beats (the worker looks dead meanwhile, which is what it is
    to the job store)."""

    def __init__(
        self, engine: Engine, info: WorkerInfo, every: float, speed: Callable[[], float | None]
    ) -> None:
        self._engine, self._info, self._every, self._speed = engine, info, every, speed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            try:
                with Session(self._engine) as session, session.begin():
                    beat(session, self._info, self._speed())
            except Exception as error:
                if not is_connection_error(error):
                    raise
                log.warning("worker %s: heartbeat skipped, database unreachable", self._info.name)
            if self._stop.wait(self._every):
                return
