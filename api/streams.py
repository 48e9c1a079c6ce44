"""Request bodies read as numbered lines, a bounded list at a time: uploads of any size pass
through the API process without being held in memory."""

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from worker.errors import RerankError
from worker.uploads import Line

LINES_PER_BLOCK = 1000


class LineTooLong(RerankError):
    status_code = 413


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
            raise LineTooLong(f"line {number + 1} is longer than {max_line_bytes} bytes", field="body")
    if pending.strip():
        lines.append((number + 1, bytes(pending)))
    if lines:
        yield lines


async def file_blocks(upload: UploadFile, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """An uploaded file (spooled to disk by the multipart parser) read a block at a time."""
    while block := await upload.read(size):
        yield block


Stored = TypeVar("Stored", covariant=True)


class Upload(Protocol[Stored]):
    """Something stored a block of lines at a time (worker.uploads)."""

    def add(self, lines: Sequence[Line]) -> None: ...

    def finish(self) -> Stored: ...


async def store_lines(
    upload: Upload[Stored], blocks: AsyncIterator[bytes], session: Session, max_line_bytes: int
) -> Stored:
    """Feed a streamed body into `upload` (database work off the event loop); on any error,
    nothing of it is kept."""
    try:
        async for lines in numbered_lines(blocks, max_line_bytes):
            await run_in_threadpool(upload.add, lines)
        return await run_in_threadpool(upload.finish)
    except BaseException:
        await run_in_threadpool(session.rollback)
        raise
