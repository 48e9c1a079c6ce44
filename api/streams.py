"""Uploads (JSONL job files and collections): the body is first read whole from the network into a
temporary file, with no database connection held however slowly it arrives; then it is read back
as numbered lines, a bounded list at a time, into the database. Memory stays bounded at any size."""

import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from typing import BinaryIO, Protocol, TypeVar, cast

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import Scope

from worker.errors import TooLarge
from worker.uploads import Line

LINES_PER_BLOCK = 1000
SPOOL_MEMORY = 1 << 20  # bytes of an upload kept in memory before it moves to a temporary file
NDJSON = "application/x-ndjson"
JSON_LINES = (NDJSON, "application/jsonl")  # the media types of an upload's raw body


def content_type(scope: Scope) -> str:
    """The request's media type, lowercase, without parameters ("" when it has none)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


async def numbered_lines(
    blocks: AsyncIterator[bytes], max_line_bytes: int, size: int = LINES_PER_BLOCK
) -> AsyncIterator[list[Line]]:
    """Lines of a streamed body, numbered from 1, in lists of at most `size`."""
    pending = bytearray()
    lines: list[Line] = []
    number = 0
    async for block in blocks:
        pending += block
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            number += 1
            lines.append((number, bytes(pending[start:end])))
            start = end + 1
            if len(lines) >= size:
                yield lines
                lines = []
        del pending[:start]
        if len(pending) > max_line_bytes:
            raise TooLarge(f"line {number + 1} is longer than {max_line_bytes} bytes", field="body")
    if pending.strip():
        lines.append((number + 1, bytes(pending)))
    if lines:
        yield lines


async def file_blocks(upload: UploadFile, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """An uploaded file (spooled to disk by the multipart parser) read a block at a time."""
    while block := await upload.read(size):
        yield block


async def spool(blocks: AsyncIterator[bytes], max_bytes: int) -> UploadFile:
    """The whole body, read from the network before any database work starts: a client sending
    one byte a second holds a temporary file meanwhile, never a database connection."""
    file = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY))  # noqa: SIM115 (closed by store_lines)
    spooled = UploadFile(file)
    size = 0
    try:
        async for block in blocks:
            size += len(block)
            if size > max_bytes:
                raise TooLarge(f"upload is over {max_bytes} bytes (RERANK_MAX_UPLOAD_BYTES)", field="body")
            await spooled.write(block)
        await spooled.seek(0)
    except BaseException:
        await spooled.close()
        raise
    return spooled


Stored = TypeVar("Stored", covariant=True)


class Upload(Protocol[Stored]):
    """Something stored a block of lines at a time (worker.uploads)."""

    def add(self, lines: Sequence[Line]) -> None: ...

    def finish(self) -> Stored: ...


async def store_lines(
    start: Callable[[], Upload[Stored]], body: UploadFile, session: Session, max_line_bytes: int
) -> Stored:
    """Feed a body already read (spool, or a multipart file) into the upload `start` begins, in
    one transaction that waits on the local file only (database work off the event loop); on any
    error, nothing of it is kept. The body is closed either way."""
    try:
        upload = await run_in_threadpool(start)
        async for lines in numbered_lines(file_blocks(body), max_line_bytes):
            await run_in_threadpool(upload.add, lines)
        return await run_in_threadpool(upload.finish)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
    finally:
        await body.close()
