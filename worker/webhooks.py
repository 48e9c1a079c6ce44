"""Webhooks: a finished job with options.callback_url is POSTed there as its job view, signed,
and retried with exponential backoff until the receiver answers 2xx (at least once: receivers
dedupe on X-Rerankq-Delivery, which stays the same across the retries of one job's delivery)."""

import hashlib
import hmac
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session

from worker import service, store
from worker.config import Settings
from worker.lifecycle import FINISHED
from worker.models import Job

log = logging.getLogger(__name__)
DELIVERY_HEADER = "X-Rerankq-Delivery"
SIGNATURE_HEADER = "X-Rerankq-Signature"
_DELIVERY_NAMESPACE = uuid.UUID("5f0c2c8e-0b7e-4d1e-9a59-3a3c1c0f7e21")

Post = Callable[[str, bytes, dict[str, str], float], int]  # (url, body, headers, timeout) -> status


@dataclass(frozen=True)
class WebhookPolicy:
    secret: str
    max_attempts: int
    backoff: float  # seconds before the first retry; doubled after each failure
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "WebhookPolicy":
        return cls(
            settings.webhook_secret,
            settings.webhook_max_attempts,
            settings.webhook_backoff,
            settings.webhook_timeout,
        )


def sign(body: bytes, secret: str) -> str:
    """The X-Rerankq-Signature of a body: `sha256=` and the hex HMAC-SHA256 of it under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_id(job_id: str) -> str:
    """One id per job's delivery, the same on every retry (a job finishes once)."""
    return str(uuid.uuid5(_DELIVERY_NAMESPACE, job_id))


def wants_delivery(job: Job) -> bool:
    """Finished, with a callback_url, and not yet delivered."""
    return (
        job.status in FINISHED
        and job.options.get("callback_url") is not None
        and job.webhook_delivered_at is None
    )


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    return httpx.post(url, content=body, headers=headers, timeout=timeout).status_code


def deliver(session: Session, job_id: str, policy: WebhookPolicy, post: Post = http_post) -> float | None:
    """One attempt at delivering a finished job's webhook, recorded on the job; the seconds to
    wait before the next attempt, or None when there is none to make (delivered, given up after
    `policy.max_attempts`, nothing to deliver, or another worker delivering it right now). The
    job's row stays locked while the receiver is called, so two deliveries of one job (a hook
    and the reconciler's re-send) never both reach it."""
    if not store.try_lock_job(session, job_id):  # another delivery of it is under way: it goes on
        return None
    job = store.get_job(session, job_id)
    session.refresh(job)
    if not wants_delivery(job) or job.webhook_attempts >= policy.max_attempts:
        return None
    body = service.job_view(session, job).model_dump_json().encode()
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: delivery_id(job_id)}
    if policy.secret:
        headers[SIGNATURE_HEADER] = sign(body, policy.secret)
    error: str | None
    try:
        status = post(job.options["callback_url"], body, headers, policy.timeout)
        error = None if 200 <= status < 300 else f"the receiver answered HTTP {status}"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"
    attempts = store.record_webhook_attempt(session, job_id, error)
    session.commit()
    if error is None:
        log.info("job %s webhook delivered (attempt %d)", job_id, attempts)
        return None
    if attempts >= policy.max_attempts:
        log.error("job %s webhook given up after %d attempts: %s", job_id, attempts, error)
        return None
    wait = policy.backoff * 2 ** (attempts - 1)
    log.warning("job %s webhook attempt %d failed (%s); next in %.1fs", job_id, attempts, error, wait)
    return wait
