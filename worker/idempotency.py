"""Idempotency-Key: a client that retries a POST (after a timeout, say) gets the object the first
try created, not a second one. A key is remembered per tenant and route with the fingerprint of
what was asked (the job or collection as stored, so a JSON body and the same job as JSONL agree)
for RERANK_IDEMPOTENCY_HOURS; the same key with another request is a 422."""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from worker.errors import InvalidInput
from worker.models import IdempotencyKey, aware, utcnow

HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class RequestKey:
    """An Idempotency-Key as sent by a tenant ("" with RERANK_AUTH=off) to a route."""

    tenant: str
    route: str  # jobs | collections
    key: str


class Fingerprint:
    """A running SHA-256 of what a request asked for, fed as it is stored."""

    def __init__(self, *parts: str) -> None:
        self._hash = hashlib.sha256()
        for part in parts:
            self.add(part)

    def add(self, part: str | bytes) -> None:
        data = part.encode() if isinstance(part, str) else part
        self._hash.update(len(data).to_bytes(8, "big") + data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def replayed(session: Session, request: RequestKey, fingerprint: str, hours: float) -> str | None:
    """The id of what an earlier request with this key created, if it is still remembered; a 422
    when that request asked for something else."""
    stmt = select(IdempotencyKey).where(
        IdempotencyKey.tenant == request.tenant,
        IdempotencyKey.route == request.route,
        IdempotencyKey.key == request.key,
    )
    row = session.scalars(stmt).first()
    if row is None:
        return None
    if aware(row.created_at) < utcnow() - timedelta(hours=hours):  # expired, not purged yet
        session.delete(row)
        session.flush()
        return None
    if row.fingerprint != fingerprint:
        raise InvalidInput(
            f"{HEADER} {request.key!r} was already used with a different request body "
            f"(for {request.route} {row.object_id}); use a new key for a new request",
            field=HEADER,
        )
    return row.object_id


def remember(session: Session, request: RequestKey, fingerprint: str, object_id: str) -> None:
    """Keep the key with what it created, in the transaction that creates it."""
    session.add(
        IdempotencyKey(
            tenant=request.tenant,
            route=request.route,
            key=request.key,
            fingerprint=fingerprint,
            object_id=object_id,
            created_at=utcnow(),
        )
    )


def purge_expired(session: Session, hours: float) -> int:
    """Forget keys older than `hours`; how many."""
    stmt = delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - timedelta(hours=hours))
    count = len(session.scalars(stmt.returning(IdempotencyKey.id)).all())
    session.commit()
    return count
