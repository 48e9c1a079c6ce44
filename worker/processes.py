"""The long-running processes besides the API: a worker (model loaded once, heartbeats, one
reconcile pass, then Celery) and the reconcile loop."""

import logging
import time
from datetime import UTC, datetime

import redis
from kombu.exceptions import OperationalError

from worker import reconcile as reconciler
from worker.config import Settings
from worker.db import get_engine, session_scope
from worker.errors import is_connection_error
from worker.heartbeats import Heartbeat, WorkerInfo
from worker.pipeline import Limits, identity_of
from worker.queue import JobQueue, model_queue
from worker.tasks import Tasks

log = logging.getLogger(__name__)


def reconcile_once(
    settings: Settings, queue: JobQueue | None = None, starting: str | None = None
) -> reconciler.Reconciled | None:
    """One reconcile pass (by the worker `starting`, if given); None (logged) when the database or
    the broker is unreachable: the next pass tries again."""
    try:
        with session_scope(settings.database_url) as session:
            limits = Limits.from_settings(settings)
            return reconciler.reconcile(session, limits, queue or JobQueue(settings), starting)
    except Exception as error:  # retried on the next pass; a loop that runs all night must not die
        if is_connection_error(error) or isinstance(error, redis.RedisError | OperationalError):
            log.warning("reconcile pass skipped, a store is unreachable: %s: %s", type(error).__name__, error)
        else:
            log.exception("reconcile pass failed")
        return None


def reconcile_forever(settings: Settings) -> None:
    """Reconcile every RERANK_RECONCILE_SECONDS until killed."""
    log.info("reconciler on queue %s every %.1fs", settings.queue, settings.reconcile_seconds)
    queue = JobQueue(settings)
    while True:
        started = time.monotonic()
        reconcile_once(settings, queue)
        time.sleep(max(0.0, settings.reconcile_seconds - (time.monotonic() - started)))


def pool_options(batches: int) -> list[str]:
    """Celery's pool for a worker holding `batches` tasks at once: threads beside one model (the
    acks stay late: each task is acknowledged when it has run), or the solo pool for one."""
    return ["--pool=solo"] if batches == 1 else ["--pool=threads", f"--concurrency={batches}"]


def run_worker(settings: Settings, loglevel: str, metrics_port: int | None = None) -> None:
    """Load the model (ModelLoadError if it cannot be), serve its metrics on `metrics_port`, start
    heartbeats, repair what earlier workers left behind, then consume the plan queue and this
    model's batch queue."""
    tasks = Tasks(settings)
    reranker = tasks.reranker
    if metrics_port is not None:
        from worker.metrics import serve

        serve(metrics_port, reranker)
    queues = [model_queue(settings.queue, name) for name in settings.model_aliases]
    identity = identity_of(reranker)  # what the score cache keys this worker's scores by
    info = WorkerInfo(
        tasks.name,
        identity.name,
        settings.model,
        str(reranker.device),
        identity.dtype,
        ",".join(queues),
        datetime.now(UTC),
        identity.fingerprint,
    )
    log.info("serving model %s (loaded from %s) on queues %s", info.model, info.model_path, info.queue)
    engine = get_engine(settings.database_url)
    heartbeat = Heartbeat(engine, info, settings.heartbeat_seconds, tasks.speed.characters_per_second).start()
    reconcile_once(settings, tasks.queue, starting=tasks.name)
    try:
        tasks.app.worker_main(
            [
                "worker",
                *pool_options(settings.worker_batches),
                "--without-mingle",  # workers share nothing through the broker: state is in the database
                "--without-gossip",
                f"--queues={settings.queue},{info.queue}",
                f"--loglevel={loglevel}",
                "-n",
                f"{info.name}@%h",
            ]
        )
    finally:
        heartbeat.stop()


def run_beat(settings: Settings, loglevel: str) -> None:
    """Celery beat: every RERANK_BEAT_SECONDS, a tick for a worker to submit the due scheduled runs.
    It keeps no state of its own (an in-memory scheduler): the schedules and their runs are in the
    database, so a restarted or second beat submits nothing twice."""
    queue = JobQueue(settings)
    queue.app.conf.beat_schedule = queue.beat_schedule(settings.beat_seconds)
    log.info("beat on queue %s every %.1fs", settings.queue, settings.beat_seconds)
    queue.app.Beat(
        scheduler="celery.beat:Scheduler", loglevel=loglevel.upper(), max_interval=settings.beat_seconds
    ).run()
