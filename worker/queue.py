"""The Celery app, built from Settings by a function and configured for long GPU work, and the one
way work is put on the queue. Imports no torch: the API process uses it to enqueue by task name."""

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from celery import Celery

from worker.config import Settings
from worker.errors import BROKER_ERRORS
from worker.lifecycle import Priority
from worker.sync import announce_finished

log = logging.getLogger(__name__)
PLAN_TASK = "rerankq.plan_job"
SCORE_TASK = "rerankq.score_batch"
FINALIZE_TASK = "rerankq.finalize_job"
WEBHOOK_TASK = "rerankq.deliver_webhook"
SCHEDULES_TASK = "rerankq.submit_due_runs"
# Redis priorities (kombu keeps one list per step and a worker pops the lowest step first), so a
# small high-priority job's batches overtake the queued batches of an overnight one.
PRIORITY_STEPS = {Priority.high: 0, Priority.normal: 3, Priority.low: 6}


# kombu's Redis transport keeps one list per priority step: the queue's name, then
# "<queue>\x06\x16<step>" for the steps after the first.
_PRIORITY_SEPARATOR = "\x06\x16"


def priority_lists(queue: str) -> dict[Priority, str]:
    """The Redis list holding each priority's tasks of `queue` (their lengths are its depth)."""
    return {
        priority: queue if step == 0 else f"{queue}{_PRIORITY_SEPARATOR}{step}"
        for priority, step in PRIORITY_STEPS.items()
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app for `settings`' broker (no task registered: worker.tasks adds them)."""
    app = Celery("rerankq", broker=settings.broker_url)
    app.conf.update(
        task_acks_late=True,  # a task is acknowledged after it ran: a killed worker's task is re-delivered
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # one batch in hand per worker; the rest stays on the queue
        task_default_queue=settings.queue,
        task_serializer="json",
        task_ignore_result=True,  # state lives in the database, not in a result backend
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "priority_steps": list(PRIORITY_STEPS.values()),
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker outlives a Redis restart, however long it takes
        worker_hijack_root_logger=False,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5},
        worker_send_task_events=True,  # Flower and `celery events` see workers and tasks
        task_send_sent_event=True,
    )
    return app


class JobQueue:
    """Where work is put: a Celery app built from `settings` and the queue its tasks go to (two
    JobQueues of two Settings are independent, as rq's `connection=` and arq's `redis_settings`).
    Plan and finalize tasks travel on the queue, batches on their job's model's queue. It is also
    the reconciler's doorbell: what waits on the broker, and ringing again."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_celery(settings)
        self.queue = settings.queue
        self.broker_url = settings.broker_url

    def enqueue(
        self,
        task: str,
        *args: object,
        priority: Priority = Priority.normal,
        queue: str | None = None,
        countdown: float | None = None,
    ) -> None:
        """Put one task on `queue` (default: this queue) at `priority`, to run no sooner than
        `countdown` seconds from now."""
        self.app.send_task(
            task,
            args=list(args),
            queue=queue or self.queue,
            priority=PRIORITY_STEPS[priority],
            countdown=countdown,
        )

    def enqueue_plan(self, job_id: str, priority: Priority) -> None:
        self.enqueue(PLAN_TASK, job_id, priority, priority=priority)

    def job_finished(self, job_id: str, webhook: bool) -> None:
        """The finish hook, run once by whatever closed the job (its last finalize, the
        reconciler, a cancel): clients waiting on it are told, and its webhook (if it has a
        callback_url) goes on the queue, ahead of batches: a delivery is short. Never raises for
        an unreachable broker: the job has finished either way, waiters also read the database,
        and the reconciler sends a webhook that was never tried."""
        announce_finished(self.broker_url, job_id)
        if webhook:
            try:
                self.send_webhook(job_id)
            except BROKER_ERRORS as error:
                log.warning("job %s: webhook not queued, the broker is unreachable (%s)", job_id, error)

    def send_webhook(self, job_id: str) -> None:
        self.enqueue(WEBHOOK_TASK, job_id, priority=Priority.high)

    def enqueue_batches(self, batch_ids: Iterable[int], model: str, priority: Priority) -> None:
        """Put batches of a job made for `model` on that model's queue."""
        for batch_id in batch_ids:
            self.enqueue(
                SCORE_TASK, batch_id, priority, priority=priority, queue=model_queue(self.queue, model)
            )

    def beat_schedule(self, every: float) -> dict[str, dict[str, object]]:
        """Celery beat's one entry: every `every` seconds, a worker submits the scheduled runs that
        are due (the database says which). A tick that waited longer than `every` expires unrun:
        the next one does its work."""
        options = {"queue": self.queue, "priority": PRIORITY_STEPS[Priority.high], "expires": every}
        return {"submit-due-runs": {"task": SCHEDULES_TASK, "schedule": every, "options": options}}

    def view(self, models: set[str]) -> "BrokerView":
        return broker_view(self.broker_url, [self.queue, *(model_queue(self.queue, m) for m in models)])

    def send_batch(self, batch_id: int, model: str, priority: Priority) -> None:
        self.enqueue_batches([batch_id], model, priority)

    def send_plan(self, job_id: str, priority: Priority) -> None:
        self.enqueue_plan(job_id, priority)


def model_queue(base: str, model: str) -> str:
    """The queue of the batches of jobs made for `model`: only workers serving that model listen
    there, so a worker never scores a job of another model. Plan and finalize tasks, which need no
    model, travel on `base`."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.rstrip("/").rsplit("/", 1)[-1])[:40]
    return f"{base}.{name}.{hashlib.sha1(model.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class BrokerView:
    """The work waiting on the broker's queues: batch ids of score tasks, job ids of plan and
    webhook tasks."""

    batches: set[int]
    plans: set[str]
    webhooks: set[str]


def broker_view(broker_url: str, queues: Iterable[str]) -> BrokerView:
    """Read what waits on `queues` of the Redis broker (a job keeps at most a window of batches
    queued, so the lists are short). Delivered messages are not counted: one whose worker died sits
    in Redis' unacked set until the visibility timeout, and the database knows better."""
    client = redis.Redis.from_url(broker_url, socket_timeout=10)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            for name in priority_lists(queue).values():
                pipe.lrange(name, 0, -1)
        waiting = pipe.execute()
    finally:
        client.close()
    view = BrokerView(set(), set(), set())
    for raw in (raw for raws in waiting for raw in raws):
        task, args = _task_args(json.loads(raw))
        if task == SCORE_TASK:
            view.batches.add(int(str(args[0])))
        elif task == PLAN_TASK:
            view.plans.add(str(args[0]))
        elif task == WEBHOOK_TASK:
            view.webhooks.add(str(args[0]))
    return view


def _task_args(message: dict[str, object]) -> tuple[object, list[object]]:
    """A Celery message's task name and positional arguments (JSON body, protocol 2)."""
    headers = message.get("headers")
    body = message.get("body")
    if not isinstance(headers, dict) or not isinstance(body, str):
        return None, []
    args, _kwargs, _embed = json.loads(base64.b64decode(body))
    return headers.get("task"), list(args)
