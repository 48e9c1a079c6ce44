"""Text hashes: what the score cache matches texts by, computed once where a text is stored."""

import hashlib

HASH_CHARS = 32  # 128 bits of SHA-256, in hex: no collision in any cache this side of 2**64 texts


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_CHARS]
