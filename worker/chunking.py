"""Long documents -> overlapping token windows that each fit beside the query, and the windows'
scores -> one document score. Pure functions; the tokenization is in worker.scoring."""

from typing import Literal

Aggregate = Literal["max", "mean", "first"]


def token_windows(tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token ranges of at most `size` tokens, consecutive ones sharing exactly `overlap`,
    covering all `tokens`; a text that fits one window is not split."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap ({overlap}) < size ({size})")
    if tokens <= size:
        return [(0, tokens)]
    step = size - overlap
    windows = []
    start = 0
    while True:
        end = min(start + size, tokens)
        windows.append((start, end))
        if end == tokens:
            return windows
        start += step


def aggregate(scores: list[float], how: Aggregate) -> tuple[float, int]:
    """A document's raw score from its windows' raw scores, and the index of the window shown as
    the best one (the highest scoring window; the first window for `first`)."""
    if len(scores) == 1:  # a document read whole: most of them, once per pair
        return scores[0], 0
    best = max(range(len(scores)), key=scores.__getitem__)
    if how == "max":
        return scores[best], best
    if how == "mean":
        return sum(scores) / len(scores), best
    return scores[0], 0
