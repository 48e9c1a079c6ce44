"""The Celery app, built from Settings by a function and configured for long GPU work, and the one
way work is put on the queue. Imports no torch: the API process uses it to enqueue by task name."""

from celery import Celery

from worker.config import Settings
from worker.lifecycle import Priority
from worker.sync import announce_finished

PLAN_TASK = "rerankq.plan_job"
SCORE_TASK = "rerankq.score_batch"
FINALIZE_TASK = "rerankq.finalize_job"
WEBHOOK_TASK = "rerankq.deliver_webhook"
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
        worker_hijack_root_logger=False,
        task_publish_retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5},
        worker_send_task_events=True,  # Flower and `celery events` see workers and tasks
        task_send_sent_event=True,
    )
    return app


class JobQueue:
    """Where work is put: a Celery app built from `settings` and the queue its tasks go to (two
    JobQueues of two Settings are independent, as rq's `connection=` and arq's `redis_settings`)."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_celery(settings)
        self.queue = settings.queue
        self.broker_url = settings.broker_url

    def enqueue(
        self, task: str, *args: object, priority: Priority = Priority.normal, countdown: float | None = None
    ) -> None:
        """Put one task on this queue at `priority`, to run no sooner than `countdown` seconds from now."""
        self.app.send_task(
            task, args=list(args), queue=self.queue, priority=PRIORITY_STEPS[priority], countdown=countdown
        )

    def enqueue_plan(self, job_id: str, priority: Priority) -> None:
        self.enqueue(PLAN_TASK, job_id, priority, priority=priority)

    def job_finished(self, job_id: str, webhook: bool) -> None:
        """What follows a job's end: clients waiting on it are told, and its webhook (if it has a
        callback_url) goes on the queue, ahead of batches: a delivery is short."""
        announce_finished(self.broker_url, job_id)
        if webhook:
            self.enqueue(WEBHOOK_TASK, job_id, priority=Priority.high)
