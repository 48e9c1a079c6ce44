"""/v1/collections: upload a knowledge base once (JSONL, streamed), look at it, delete it."""

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import deps
from api.schemas import ERROR_RESPONSES, CollectionList, CollectionOut, CollectionUpdateOut, DocumentsPage
from api.streams import JSON_LINES, NDJSON, content_type, spool, store_lines
from worker import service
from worker.errors import InvalidInput, UnsupportedMediaType
from worker.idempotency import RequestKey
from worker.spec import ParamStr
from worker.tenancy import Caller
from worker.uploads import CollectionUpdate, CollectionUpload

router = APIRouter(prefix="/v1/collections", tags=["collections"])
DbSession = deps.DbSession
errors = ERROR_RESPONSES
CallerDep = deps.CallerDep
BODY = {
    "requestBody": {
        "content": {
            "application/x-ndjson": {
                "schema": {"type": "string", "description": '{"id", "text", "metadata"?} per line'}
            },
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        }
    }
}


UPDATE_BODY = {
    "requestBody": {
        "content": {
            "application/x-ndjson": {
                "schema": {
                    "type": "string",
                    "description": '{"id", "text", "metadata"?} (add or replace)'
                    ' or {"id", "deleted": true} (delete) per line',
                }
            },
            "multipart/form-data": BODY["requestBody"]["content"]["multipart/form-data"],
        }
    }
}


REPLAYED: dict[int | str, dict[str, Any]] = {
    200: {
        "model": CollectionOut,
        "description": "The collection an earlier request with this Idempotency-Key stored",
    }
}


@router.post(
    "", status_code=201, response_model=CollectionOut, responses={**REPLAYED, **errors}, openapi_extra=BODY
)
async def upload_collection(
    request: Request,
    response: Response,
    session: DbSession,
    settings: deps.SettingsDep,
    caller: CallerDep,
    request_key: Annotated[RequestKey | None, Depends(deps.collection_request_key)],
    name: ParamStr | None = None,
) -> CollectionOut:
    """Store a JSONL stream of documents (a raw body, or a multipart `file`) in bounded memory;
    bad lines are reported by line number and skipped, the good ones kept. A repeated
    Idempotency-Key answers 200 with the first request's collection."""
    body = await _body(request, settings.max_upload_bytes)
    stored, replayed = await store_lines(
        partial(CollectionUpload, session, name, settings, caller, request_key),
        body,
        session,
        settings.max_request_bytes,
    )
    if replayed:
        response.status_code = 200
    return stored


async def _body(request: Request, max_bytes: int) -> UploadFile:
    """The upload, read whole before the database is touched: a raw JSONL body or a multipart
    form's `file`; any other media type (a cross-site form's text/plain, say) is refused."""
    media = content_type(request.scope)
    if media in JSON_LINES:
        return await spool(request.stream(), max_bytes)
    if media != "multipart/form-data":
        raise UnsupportedMediaType(
            f"content-type {media or '(none)'} is not {NDJSON} or multipart/form-data", field="body"
        )
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile):
        await form.close()
        raise InvalidInput("a multipart upload needs a `file` part", field="file")
    return file


@router.patch(
    "/{collection_id}", response_model=CollectionUpdateOut, responses=errors, openapi_extra=UPDATE_BODY
)
async def update_collection(
    collection_id: ParamStr,
    request: Request,
    session: DbSession,
    settings: deps.SettingsDep,
    caller: CallerDep,
) -> CollectionUpdateOut:
    """Apply a JSONL stream of changes in one transaction: `{"id", "text", "metadata"?}` adds or
    replaces a document, `{"id", "deleted": true}` deletes one. Bad lines are reported by line
    number and skipped; the collection's version moves on once, if anything changed."""
    await run_in_threadpool(_visible, session, collection_id, caller)  # another tenant's: 404 first
    body = await _body(request, settings.max_upload_bytes)
    return await store_lines(
        partial(CollectionUpdate, session, collection_id, settings, caller),
        body,
        session,
        settings.max_request_bytes,
    )


def _visible(session: Session, collection_id: str, caller: Caller) -> None:
    """Check the collection is the caller's, then give the connection back: none is held while
    the body arrives."""
    service.get_collection(session, collection_id, caller)
    session.rollback()


@router.get("", response_model=CollectionList, responses=errors)
def list_collections(
    session: DbSession, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> CollectionList:
    """The caller's collections (an admin key: everyone's), newest first, with their counts."""
    return CollectionList(collections=service.list_collections(session, limit, caller))


@router.get("/{collection_id}/documents", response_model=DocumentsPage, responses=errors)
def collection_documents(
    collection_id: ParamStr,
    session: DbSession,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    cursor: ParamStr | None = None,
) -> DocumentsPage:
    """A collection's documents (id, text, metadata) by id, a page at a time."""
    return service.collection_documents(session, collection_id, cursor, limit, caller)


@router.get("/{collection_id}", response_model=CollectionOut, responses=errors)
def get_collection(collection_id: ParamStr, session: DbSession, caller: CallerDep) -> CollectionOut:
    """Documents stored and the lines that were rejected."""
    return service.get_collection(session, collection_id, caller)


@router.delete("/{collection_id}", status_code=204, responses=errors)
def delete_collection(collection_id: ParamStr, session: DbSession, caller: CallerDep) -> None:
    """Delete a collection that no job refers to (409 otherwise)."""
    service.delete_collection(session, collection_id, caller)
