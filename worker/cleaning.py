"""Input hygiene for HTML/XML exports and OCR output: tags, comments, scripts and control
characters go, entities are unescaped, whitespace collapses; the text inside <code>/<pre> stays.
Every kept character remembers where it came from, so spans map back to the client's text."""

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

# One alternative per kind of thing the scanner meets, tried left to right.
_TOKEN = re.compile(
    r"(?P<comment><!--.*?(?:-->|\Z))"
    r"|(?P<block><(?P<blockname>script|style)\b[^>]*>.*?(?:</(?P=blockname)\s*>|\Z))"
    r"|(?P<tag></?[A-Za-z][\w:.-]*(?:\s[^<>]*)?/?>|<![A-Za-z][^<>]*>|<\?.*?\?>)"
    r"|(?P<entity>&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
    r"|(?P<space>\s+)"
    r"|(?P<control>[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f])",
    re.DOTALL | re.IGNORECASE,
)


@dataclass(frozen=True)
class Cleaned:
    """Cleaned text and, for each of its characters, the [start, end) of what it came from in the
    original text (one character, or a whole entity such as &amp;)."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]
    original_length: int

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that cleaned[start:end] came from."""
        if start >= end:
            at = self.starts[start] if start < len(self.starts) else self.original_length
            return at, at
        return self.starts[start], self.ends[end - 1]


def identity(text: str) -> Cleaned:
    """`text` as it is: ranges, not lists, map each character to itself (no copy per character)."""
    return Cleaned(text, range(len(text)), range(1, len(text) + 1), len(text))


def clean(text: str) -> Cleaned:
    """Strip markup and noise from `text`, keeping the origin of every character."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []

    def emit(chunk: str, start: int, end: int) -> None:
        out.extend(chunk)
        starts.extend([start] * len(chunk))
        ends.extend([end] * len(chunk))

    def separate(start: int, end: int) -> None:  # a tag or a run of whitespace separates words once
        if out and out[-1] != " ":
            emit(" ", start, end)

    position = 0
    for match in _TOKEN.finditer(text):
        for offset, char in enumerate(text[position : match.start()], start=position):
            emit(char, offset, offset + 1)
        position = match.end()
        kind = match.lastgroup if match.lastgroup != "blockname" else "block"
        if kind == "entity":
            decoded = html.unescape(match.group())
            if decoded.isspace():
                separate(match.start(), match.end())
            else:
                emit(decoded, match.start(), match.end())
        elif kind in ("tag", "block", "space"):
            separate(match.start(), match.end())
    for offset, char in enumerate(text[position:], start=position):
        emit(char, offset, offset + 1)
    while out and out[-1] == " ":
        out.pop()
        starts.pop()
        ends.pop()
    lead = 1 if out and out[0] == " " else 0
    return Cleaned("".join(out[lead:]), starts[lead:], ends[lead:], len(text))
