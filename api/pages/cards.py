"""A page of results as the cards the results page draws: each result's passage cut into marked
and unmarked segments, and for a document read as several windows, its whole text with the
winning window set apart."""

from dataclasses import dataclass

from api.pages.highlight import Segment, highlight
from worker.views import ResultOut, sigmoid


@dataclass(frozen=True)
class WholeText:
    """A chunked document's whole text around its winning window, each part highlighted."""

    before: list[Segment]
    window: list[Segment]
    after: list[Segment]


@dataclass(frozen=True)
class Card:
    result: ResultOut
    probability: float  # sigmoid(raw_score): what the threshold is compared with, whatever `score` is
    passage: list[Segment]  # the winning window (the whole text when the document fit one)
    whole: WholeText | None


def whole_text(query: str, text: str, start: int, end: int) -> WholeText:
    return WholeText(
        before=highlight(query, text[:start]),
        window=highlight(query, text[start:end]),
        after=highlight(query, text[end:]),
    )


def cards(query: str, results: list[ResultOut], texts: dict[str, str]) -> list[Card]:
    """One card per result; `texts` holds the documents' whole texts, by document id. The whole
    text is kept where the scored window is not all of it (read in windows, cut at max_length, or
    cleaned of HTML)."""
    built = []
    for result in results:
        best = result.best_chunk
        text = texts.get(result.document_id)
        whole = None
        if text is not None and (best.start, best.end) != (0, len(text)):
            whole = whole_text(query, text, best.start, best.end)
        built.append(
            Card(
                result=result,
                probability=sigmoid(result.raw_score),
                passage=highlight(query, best.text),
                whole=whole,
            )
        )
    return built
