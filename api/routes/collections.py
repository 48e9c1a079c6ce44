"""/v1/collections: upload a knowledge base once (JSONL, streamed), look at it, delete it."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import deps
from api.schemas import CollectionList, CollectionOut, DocumentsPage, ErrorOut
from api.streams import file_blocks, store_lines
from worker import service
from worker.config import Settings
from worker.errors import InvalidInput
from worker.idempotency import RequestKey
from worker.uploads import CollectionUpload

router = APIRouter(prefix="/v1/collections", tags=["collections"])
DbSession = Annotated[Session, Depends(deps.session)]
errors: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 404, 409, 413, 422, 429)
}
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
    settings: Annotated[Settings, Depends(deps.settings)],
    caller: CallerDep,
    request_key: Annotated[RequestKey | None, Depends(deps.collection_request_key)],
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> CollectionOut:
    """Store a JSONL stream of documents (a raw body, or a multipart `file`) in bounded memory;
    bad lines are reported by line number and skipped, the good ones kept. A repeated
    Idempotency-Key answers 200 with the first request's collection."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidInput("a multipart upload needs a `file` part", field="file")
        blocks = file_blocks(file)
    else:
        blocks = request.stream()
    upload = await run_in_threadpool(CollectionUpload, session, name, settings, caller, request_key)
    stored, replayed = await store_lines(upload, blocks, session, settings.max_request_bytes)
    if replayed:
        response.status_code = 200
    return stored


@router.get("", response_model=CollectionList, responses=errors)
def list_collections(
    session: DbSession, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> CollectionList:
    """The caller's collections (an admin key: everyone's), newest first, with their counts."""
    return CollectionList(collections=service.list_collections(session, limit, caller))


@router.get("/{collection_id}/documents", response_model=DocumentsPage, responses=errors)
def collection_documents(
    collection_id: str,
    session: DbSession,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    cursor: str | None = None,
) -> DocumentsPage:
    """A collection's documents (id, text, metadata) by id, a page at a time."""
    return service.collection_documents(session, collection_id, cursor, limit, caller)


@router.get("/{collection_id}", response_model=CollectionOut, responses=errors)
def get_collection(collection_id: str, session: DbSession, caller: CallerDep) -> CollectionOut:
    """Documents stored and the lines that were rejected."""
    return service.get_collection(session, collection_id, caller)


@router.delete("/{collection_id}", status_code=204, responses=errors)
def delete_collection(collection_id: str, session: DbSession, caller: CallerDep) -> None:
    """Delete a collection that no job refers to (409 otherwise)."""
    service.delete_collection(session, collection_id, caller)
