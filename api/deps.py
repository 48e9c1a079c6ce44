"""Dependencies the routes receive: settings, a database session, the queue to hand work to, the
caller (who the API key says is asking); all of them the app's own, as create_app was given them."""

from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated

import redis
from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from worker import keys
from worker.config import Settings
from worker.cursors import Cursors
from worker.db import session_factory
from worker.errors import Forbidden, Unauthenticated
from worker.idempotency import HEADER, RequestKey
from worker.migrate import require_schema
from worker.queue import JobQueue
from worker.quotas import RateLimit
from worker.service import Enqueue, Finished
from worker.stalls import StallCheck
from worker.tenancy import TRUSTED, Caller

# The page keeps its key in this cookie, for what the browser fetches by itself (pages, downloads).
KEY_COOKIE = "rerankq_key"
SAFE_METHODS = ("GET", "HEAD")


def settings(request: Request) -> Settings:
    configured: Settings = request.app.state.settings
    return configured


def cursors(request: Request) -> Cursors:
    """Signs results cursors under RERANK_CURSOR_SECRET (or this process's own key)."""
    return Cursors.from_secret(settings(request).cursor_secret)


def queue(request: Request) -> JobQueue:
    configured: JobQueue = request.app.state.queue
    return configured


def session(request: Request) -> Iterator[Session]:
    """A session on a migrated database (a 503 that says `rerankq migrate` otherwise)."""
    url = settings(request).database_url
    require_schema(url)
    db = session_factory(url)()
    try:
        yield db
    finally:
        db.close()


def enqueue(request: Request) -> Enqueue:
    return queue(request).enqueue_plan


def on_finished(request: Request) -> Finished:
    return queue(request).job_finished


# The dependencies routes take, each declared once.
DbSession = Annotated[Session, Depends(session)]
SettingsDep = Annotated[Settings, Depends(settings)]
EnqueueDep = Annotated[Enqueue, Depends(enqueue)]


@lru_cache
def _broker(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5
    )  # a hung Redis: no hung scrape


def broker(request: Request) -> redis.Redis:
    """The broker's Redis, to read queue depths from."""
    return _broker(settings(request).broker_url)


def stalls(request: Request, db: DbSession) -> StallCheck:
    """Why jobs stalled, looked up against this app's settings (live workers, broker)."""
    return StallCheck(db, settings(request))


# Declared so that /docs offers "Authorize" and the OpenAPI schema says how to authenticate.
BEARER = HTTPBearer(auto_error=False, description="An API key (`rerankq keys create`) as a bearer token")
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, in its own header")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
ApiKeyHeader = Annotated[str | None, Security(API_KEY)]


def _presented_key(
    request: Request, bearer: HTTPAuthorizationCredentials | None, header: str | None
) -> str | None:
    """The key a request carries: `Authorization: Bearer`, `X-API-Key`, or (reads only, so a
    cross-site form can never write with it) the page's cookie."""
    if bearer is not None and bearer.credentials.strip():
        return bearer.credentials.strip()
    if header is not None and header.strip():
        return header.strip()
    if request.method in SAFE_METHODS and (cookie := request.cookies.get(KEY_COOKIE, "").strip()):
        return cookie
    return None


@lru_cache
def _rate_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def caller(
    request: Request,
    db: Annotated[Session, Depends(session)],
    bearer: BearerCredentials,
    header: ApiKeyHeader,
) -> Caller:
    """Who is asking, from the API key (401 without a valid one), counted against its tenant's
    request rate (429). With RERANK_AUTH=off every request is trusted."""
    configured = settings(request)
    if not configured.auth:
        return TRUSTED
    key = _presented_key(request, bearer, header)
    if key is None:
        raise Unauthenticated("an API key is required: send `Authorization: Bearer <key>` or `X-API-Key`")
    found = keys.authenticate(db, key)
    db.rollback()  # no transaction left open while the route waits on the network
    if found is None:
        raise Unauthenticated("the API key is unknown or revoked")
    limit = RateLimit(
        _rate_client(configured.broker_url), configured.queue, configured.tenant_requests_per_minute
    )
    limit.hit(found.tenant)
    return found


CallerDep = Annotated[Caller, Depends(caller)]


def admin(found: CallerDep) -> Caller:
    """An admin's caller (403 for any other key: what is asked is not another tenant's object)."""
    if not found.admin:
        raise Forbidden("this needs an admin key")
    return found


def request_key(found: Caller, route: str, key: str | None) -> RequestKey | None:
    """The request's Idempotency-Key, remembered per tenant and `route`."""
    return None if key is None else RequestKey(found.quota_name, route, key)


IdempotencyHeader = Annotated[str | None, Header(alias=HEADER, min_length=1, max_length=255)]


def job_request_key(found: CallerDep, key: IdempotencyHeader = None) -> RequestKey | None:
    return request_key(found, "jobs", key)


def collection_request_key(found: CallerDep, key: IdempotencyHeader = None) -> RequestKey | None:
    return request_key(found, "collections", key)
