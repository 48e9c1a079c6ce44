"""API keys: created for a tenant (shown once), listed, revoked, and looked up by the API for
every request. Only a key's SHA-256 is stored: a key is 32 random bytes, so a fast hash is enough
(there is nothing to brute-force) and a lookup is one indexed read."""

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.errors import InvalidInput, NotFound
from worker.models import ApiKey, utcnow
from worker.tenancy import Caller

PREFIX = "rq_"  # makes a leaked key easy to recognise (and to grep for in a repository)


@dataclass(frozen=True)
class KeyInfo:
    """A key as `rerankq keys list` shows it: never the key itself."""

    id: str
    tenant: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: ApiKey) -> "KeyInfo":
        return cls(row.id, row.tenant, row.admin, row.created_at, row.revoked_at)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, tenant: str, admin: bool = False) -> tuple[KeyInfo, str]:
    """A new key for `tenant`; its info and the key itself (shown once, never stored)."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 255:
        raise InvalidInput("a tenant is a name of 1 to 255 characters", field="tenant")
    key = PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(id=uuid4().hex[:12], key_hash=digest(key), tenant=tenant, admin=admin, created_at=utcnow())
    session.add(row)
    session.commit()
    return KeyInfo.from_row(row), key


def list_keys(session: Session) -> list[KeyInfo]:
    rows: Sequence[ApiKey] = session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
    return [KeyInfo.from_row(row) for row in rows]


def revoke_key(session: Session, key_id: str) -> KeyInfo:
    """Revoke a key now: the next request that sends it is a 401."""
    stmt = update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    session.execute(stmt)
    session.commit()
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"no key with id {key_id!r}", field="id")
    session.refresh(row)
    return KeyInfo.from_row(row)


def has_admin_key(session: Session) -> bool:
    stmt = select(ApiKey.id).where(ApiKey.admin.is_(True), ApiKey.revoked_at.is_(None)).limit(1)
    return session.execute(stmt).first() is not None


def authenticate(session: Session, key: str) -> Caller | None:
    """The caller a key stands for; None when it is unknown or revoked."""
    stmt = select(ApiKey).where(ApiKey.key_hash == digest(key), ApiKey.revoked_at.is_(None))
    row = session.scalars(stmt).first()
    return None if row is None else Caller(tenant=row.tenant, admin=row.admin, key_id=row.id)
