"""/v1/collections: upload a knowledge base once (JSONL, streamed), look at it, delete it."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api import deps
from api.schemas import CollectionList, CollectionOut, CollectionUpdateOut, DocumentsPage, ErrorOut
from api.streams import file_blocks, store_lines
from worker import collection, service
from worker.config import Settings
from worker.errors import InvalidInput
from worker.uploads import CollectionUpdate, CollectionUpload

router = APIRouter(prefix="/v1/collections", tags=["collections"])
DbSession = Annotated[Session, Depends(deps.session)]
errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (404, 409, 413, 422)}
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


@router.post("", status_code=201, response_model=CollectionOut, responses=errors, openapi_extra=BODY)
async def upload_collection(
    request: Request,
    session: DbSession,
    settings: Annotated[Settings, Depends(deps.settings)],
    name: Annotated[str | None, Query(max_length=255)] = None,
) -> CollectionOut:
    """Store a JSONL stream of documents (a raw body, or a multipart `file`) in bounded memory;
    bad lines are reported by line number and skipped, the good ones kept."""
    blocks = await _body(request)
    upload = await run_in_threadpool(CollectionUpload, session, name, settings.max_document_chars)
    return await store_lines(upload, blocks, session, settings.max_request_bytes)


@router.patch(
    "/{collection_id}", response_model=CollectionUpdateOut, responses=errors, openapi_extra=UPDATE_BODY
)
async def update_collection(
    collection_id: str,
    request: Request,
    session: DbSession,
    settings: Annotated[Settings, Depends(deps.settings)],
) -> CollectionUpdateOut:
    """Apply a JSONL stream of changes in one transaction: `{"id", "text", "metadata"?}` adds or
    replaces a document, `{"id", "deleted": true}` deletes one. Bad lines are reported by line
    number and skipped; the collection's version moves on once, if anything changed."""
    blocks = await _body(request)
    changes = await run_in_threadpool(CollectionUpdate, session, collection_id, settings.max_document_chars)
    return await store_lines(changes, blocks, session, settings.max_request_bytes)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The lines' bytes: a raw body, or a multipart upload's `file` part."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return request.stream()
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise InvalidInput("a multipart upload needs a `file` part", field="file")
    return file_blocks(file)


@router.get("", response_model=CollectionList, responses=errors)
def list_collections(session: DbSession, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> CollectionList:
    """Collections, newest first, with their counts."""
    return CollectionList(collections=service.list_collections(session, limit))


@router.get("/{collection_id}/documents", response_model=DocumentsPage, responses=errors)
def collection_documents(
    collection_id: str,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    cursor: str | None = None,
) -> DocumentsPage:
    """A collection's documents (id, text, metadata) by id, a page at a time."""
    return service.collection_documents(session, collection_id, cursor, limit)


@router.get("/{collection_id}", response_model=CollectionOut, responses=errors)
def get_collection(collection_id: str, session: DbSession) -> CollectionOut:
    """Documents stored and the lines that were rejected."""
    return CollectionOut.from_row(collection.get(session, collection_id))


@router.delete("/{collection_id}", status_code=204, responses=errors)
def delete_collection(collection_id: str, session: DbSession) -> None:
    """Delete a collection that no job refers to (409 otherwise)."""
    collection.remove(session, collection_id)
