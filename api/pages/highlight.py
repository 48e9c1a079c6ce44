"""Where a passage matches its query, as spans to wrap in <mark>: whole words for space-separated
scripts, and for Chinese, Japanese and Korean (no spaces to find words by) every run of two or more
of the query's characters that also occurs in the passage. Pure text in, spans out; the template
escapes the text, so nothing here writes HTML."""

import re
from dataclasses import dataclass

# Han, kana and Hangul: scripts written without spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_RUN = re.compile(f"[{_CJK}]{{2,}}")
# A letter or digit of a spaced script; a word is a run of them, bounded by anything else (CJK too).
_LETTER = rf"[^\W{_CJK}]"
_WORD = re.compile(f"{_LETTER}+")
# Words too common to say anything about relevance; marking them would mark half the passage.
# fmt: off
STOPWORDS = frozenset({
    "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how",
    "in", "is", "it", "of", "on", "or", "the", "to", "what", "when", "where", "which", "who", "why",
    "with", "without", "you", "your", "my", "our", "this", "that",
})
# fmt: on
# Characters of one CJK run considered: runs longer than a sentence add nothing but work.
_LONGEST_RUN = 24


@dataclass(frozen=True)
class Segment:
    """A piece of a passage; `marked` pieces match the query."""

    text: str
    marked: bool = False


def keywords(query: str) -> list[str]:
    """The query's words worth marking (lower case, stopwords and one-letter words left out)."""
    words = {word.lower() for word in _WORD.findall(query)}
    return sorted(word for word in words if len(word) > 1 and word not in STOPWORDS)


def _cjk_pieces(query: str) -> set[str]:
    """Every substring of two or more characters of the query's CJK runs."""
    pieces: set[str] = set()
    for run in _CJK_RUN.findall(query):
        run = run[:_LONGEST_RUN]
        pieces.update(run[i:j] for i in range(len(run)) for j in range(i + 2, len(run) + 1))
    return pieces


def matches(query: str, passage: str) -> list[tuple[int, int]]:
    """Character spans of `passage` that match `query`, sorted and merged."""
    spans: list[tuple[int, int]] = []
    if words := keywords(query):
        alternatives = "|".join(map(re.escape, words))
        pattern = re.compile(f"(?<!{_LETTER})(?:{alternatives})(?!{_LETTER})", re.IGNORECASE)
        spans += [match.span() for match in pattern.finditer(passage)]
    for piece in _cjk_pieces(query):
        start = passage.find(piece)
        while start >= 0:
            spans.append((start, start + len(piece)))
            start = passage.find(piece, start + 1)
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def segments(passage: str, spans: list[tuple[int, int]]) -> list[Segment]:
    """`passage` cut at `spans` (sorted, not overlapping): the spans marked, the rest not."""
    pieces: list[Segment] = []
    at = 0
    for start, end in spans:
        if start > at:
            pieces.append(Segment(passage[at:start]))
        pieces.append(Segment(passage[start:end], marked=True))
        at = end
    if at < len(passage):
        pieces.append(Segment(passage[at:]))
    return pieces


def highlight(query: str, passage: str) -> list[Segment]:
    return segments(passage, matches(query, passage))
