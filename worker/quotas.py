"""Per-tenant quotas: unfinished pairs on the queue (checked when a job is stored) and requests per
minute (a fixed window counted in Redis, shared by every API process). Both answer 429 with
Retry-After. They bound tenants (RERANK_AUTH=on); a job of no tenant is not counted."""

import logging
import time
from dataclasses import dataclass

import redis
from sqlalchemy.orm import Session

from worker import store
from worker.errors import TooManyRequests

log = logging.getLogger(__name__)
# What a client refused for queued pairs is told to wait: about the time a batch window takes.
QUEUED_RETRY_AFTER = 30
WINDOW_SECONDS = 60


def check_queued_pairs(session: Session, tenant: str | None, adding: int, limit: int) -> None:
    """Refuse a job of `adding` pairs that would take `tenant` over `limit` unfinished pairs."""
    if tenant is None or limit <= 0:
        return
    queued = store.unfinished_pairs(session, tenant)
    if queued + adding > limit:
        raise TooManyRequests(
            f"tenant {tenant!r} has {queued} pairs queued; this job's {adding} would pass its limit "
            f"of {limit} (RERANK_TENANT_MAX_QUEUED_PAIRS): retry when some have been scored",
            retry_after=QUEUED_RETRY_AFTER,
        )


@dataclass(frozen=True)
class RateLimit:
    """`per_minute` requests per tenant in each clock minute, counted under `prefix` in Redis."""

    client: redis.Redis
    prefix: str
    per_minute: int

    def hit(self, tenant: str | None) -> None:
        """Count one request of `tenant`; 429 past its limit. An unreachable Redis lets the request
        through (the queue would refuse the work itself): a quota must not take the API down."""
        if tenant is None or self.per_minute <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"{self.prefix}:rate:{tenant}:{window}"
        try:
            pipe = self.client.pipeline()
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
            count = int(pipe.execute()[0])
        except redis.RedisError as error:
            log.warning("rate limit not counted, Redis unreachable: %s", error)
            return
        if count > self.per_minute:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)
            raise TooManyRequests(
                f"tenant {tenant!r} made more than {self.per_minute} requests this minute "
                "(RERANK_TENANT_REQUESTS_PER_MINUTE)",
                retry_after=retry_after,
            )
