"""Batch leases: a claimed batch belongs to one worker until a deadline the worker keeps renewing
while it scores; a lapsed lease (the worker died or lost the database) hands the batch back to the
queue. The database, not the broker, says who holds what."""

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, case, or_, select, update
from sqlalchemy.orm import Session

from worker.errors import is_connection_error
from worker.lifecycle import BATCH_TRANSITIONS, BatchStatus, may_become
from worker.models import Batch, utcnow

log = logging.getLogger(__name__)


def new_holder_name() -> str:
    """A worker's name in heartbeats and batch leases: host, pid and a random tag, so a worker
    restarted in the same container (same host name and pid) is a new holder."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _gone_from_this_host(holder: str, me: str) -> bool:
    """Whether `holder` (another name than `me`) was a worker process of this host that no longer
    runs: its pid is gone, or it is our own pid under an older tag (the container restarted)."""
    host, _, rest = holder.rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or holder == me or not rest.isdigit():
        return False
    pid = int(rest)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


@dataclass(frozen=True)
class Lease:
    """Who claims batches (a worker's name) and for how long a claim or renewal lasts."""

    holder: str
    seconds: float

    def deadline(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempts: int


def claim_batch(session: Session, batch_id: int, lease: Lease) -> Claim | None:
    """Take a batch for `lease.holder` and count the attempt; None if it is finished or another
    worker's lease on it still runs (a duplicate message then costs nothing). A pending batch can be
    claimed too (its task may have been sent by a worker that died before the release committed);
    the holder claiming again (its retry after a database outage, even once the reconciler put the
    batch back on the queue) spends no attempt."""
    now = utcnow()
    mine = and_(Batch.status.in_([BatchStatus.running, BatchStatus.queued]), Batch.worker == lease.holder)
    lapsed = and_(
        Batch.status == BatchStatus.running, or_(Batch.lease_until.is_(None), Batch.lease_until < now)
    )
    may_run = Batch.status.in_(may_become(BATCH_TRANSITIONS, BatchStatus.running))
    claimable = and_(may_run, or_(Batch.status != BatchStatus.running, mine, lapsed))
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, claimable)
        .values(
            status=BatchStatus.running,
            attempts=Batch.attempts + case((mine, 0), else_=1),
            worker=lease.holder,
            lease_until=lease.deadline(now),
        )
        .returning(Batch.job_id, Batch.attempts)
        .execution_options(synchronize_session=False)
    )
    row = session.execute(stmt).one_or_none()
    return None if row is None else Claim(row[0], row[1])


def renew(session: Session, batch_id: int, lease: Lease) -> bool:
    """Push the deadline of a batch this holder still runs; False if it is no longer its own."""
    stmt = (
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == BatchStatus.running, Batch.worker == lease.holder)
        .values(lease_until=lease.deadline(utcnow()))
        .returning(Batch.id)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).first() is not None


@contextmanager
def renewing(engine: Engine, batch_id: int, lease: Lease) -> Iterator[None]:
    """Renew a batch's lease from a thread every third of its length while the body runs (a long
    model call on a CPU holds the lease as long as it needs)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(lease.seconds / 3):
            try:
                with Session(engine) as session, session.begin():
                    renew(session, batch_id, lease)
            except Exception as error:  # the lease lapses if this keeps failing: the reconciler's job
                if not is_connection_error(error):
                    raise
                log.warning("batch %d: lease not renewed, database unreachable (%s)", batch_id, error)

    thread = threading.Thread(target=loop, name=f"lease-{batch_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def return_orphaned(session: Session, me: str) -> list[int]:
    """Put back to queued, now rather than when their lease lapses, the running batches of workers
    of this host whose process is gone (a worker SIGKILLed and restarted in its container or on its
    node): the new worker `me` frees what its dead predecessor held. Guarded like a claim: a batch
    whose holder changed meanwhile is left alone."""
    holders = session.scalars(
        select(Batch.worker).where(Batch.status == BatchStatus.running, Batch.worker.is_not(None)).distinct()
    )
    gone = [holder for holder in holders if holder and _gone_from_this_host(holder, me)]
    if not gone:
        return []
    stmt = (
        update(Batch)
        .where(Batch.status == BatchStatus.running, Batch.worker.in_(gone))
        .values(status=BatchStatus.queued, lease_until=None)
        .returning(Batch.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(stmt))


def return_lapsed(session: Session) -> list[int]:
    """Put running batches whose lease lapsed back to queued; their ids. Atomic per row, so two
    reconcilers never both return the same batch."""
    now = utcnow()
    stmt = (
        update(Batch)
        .where(
            Batch.status == BatchStatus.running,
            Batch.status.in_(may_become(BATCH_TRANSITIONS, BatchStatus.queued)),
            or_(Batch.lease_until.is_(None), Batch.lease_until < now),
        )
        .values(status=BatchStatus.queued, lease_until=None)
        .returning(Batch.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(session.scalars(stmt))
