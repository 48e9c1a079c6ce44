"""Results cursors: a position in one job's ranked results (a query's row id and a rank), signed
with the job's id so that a cursor is read back only by the job it came from, and a forged or
damaged one is a 422 before any number in it reaches the database."""

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from worker.errors import InvalidInput

BIGINT_MAX = 2**63 - 1  # the largest id the database stores
_TAG_BYTES = 12  # 96 bits of HMAC-SHA256: enough that a guessed cursor is never accepted
# The key of a process whose RERANK_CURSOR_SECRET is unset: its cursors end with it.
_PROCESS_KEY = secrets.token_bytes(32)

Position = tuple[int, int]  # (query row id, rank) of the last result of a page


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Cursors:
    """Signs and checks results cursors under one key (RERANK_CURSOR_SECRET, else the process's)."""

    key: bytes = _PROCESS_KEY

    @classmethod
    def from_secret(cls, secret: str) -> "Cursors":
        return cls(secret.encode() if secret else _PROCESS_KEY)

    def _tag(self, job_id: str, position: str) -> bytes:
        return hmac.new(self.key, f"{job_id}:{position}".encode(), hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, job_id: str, position: Position) -> str:
        text = f"{position[0]}.{position[1]}"
        return f"{_b64(text.encode())}.{_b64(self._tag(job_id, text))}"

    def decode(self, job_id: str, cursor: str) -> Position:
        """The position `cursor` holds, if this API signed it for `job_id`; else InvalidInput."""
        try:
            body, tag = cursor.split(".")
            text = _unb64(body).decode("ascii")
            signed = hmac.compare_digest(_unb64(tag), self._tag(job_id, text))
            query_pk, rank = (int(part) for part in text.split("."))
        except (ValueError, binascii.Error) as error:  # UnicodeDecodeError is a ValueError
            raise InvalidInput("cursor is not one this API returned", field="cursor") from error
        if not signed:
            raise InvalidInput(
                f"cursor is not one of job {job_id}'s pages (another job's, or from an API process"
                " with another RERANK_CURSOR_SECRET): start again without it",
                field="cursor",
            )
        if not (0 <= query_pk <= BIGINT_MAX and 0 <= rank <= BIGINT_MAX):
            raise InvalidInput("cursor holds a position out of range", field="cursor")
        return query_pk, rank


PROCESS_CURSORS = Cursors()  # for callers without settings: the process's own key
