"""Request bodies read as numbered lines, a bounded list at a time: uploads of any size pass
through the API process without being held in memory."""

from collections.abc import AsyncIterator

from starlette.datastructures import UploadFile

from worker.errors import RerankError
from worker.uploads import Line

LINES_PER_CHUNK = 1000


class LineTooLong(RerankError):
    status_code = 413


async def numbered_lines(
    chunks: AsyncIterator[bytes], max_line_bytes: int, size: int = LINES_PER_CHUNK
) -> AsyncIterator[list[Line]]:
    """Lines of a streamed body, numbered from 1, in lists of at most `size`."""
    pending = bytearray()
    lines: list[Line] = []
    number = 0
    async for chunk in chunks:
        pending += chunk
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


async def file_chunks(upload: UploadFile, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """An uploaded file (spooled to disk by the multipart parser) read a block at a time."""
    while chunk := await upload.read(size):
        yield chunk
