"""A batch's (query, document) pairs -> one raw score per document: clean the text, split a long
document into token windows that fit beside the query, score every window, aggregate, and keep
each window's span in the client's original text."""

from collections.abc import Sequence
from dataclasses import dataclass

from worker.chunking import aggregate, token_windows
from worker.cleaning import Cleaned, clean, identity
from worker.engine import ModelInput, Reranker
from worker.overlap import InLine, alone
from worker.spec import ChunkingOptions, JobOptions


@dataclass(frozen=True)
class Window:
    start: int  # character span in the original document text
    end: int
    raw_score: float


@dataclass(frozen=True)
class ScoredDocument:
    raw_score: float
    best: int  # index of the window shown as the winner
    windows: list[Window]
    query_truncated: bool


def _window_ranges(
    tokens: int, budget: int, chunking: ChunkingOptions, max_windows: int
) -> list[tuple[int, int]]:
    if not chunking.enabled:
        return [(0, min(tokens, budget))]  # truncation, as FlagEmbedding does
    size = min(chunking.max_tokens, budget)
    return token_windows(tokens, size, min(chunking.overlap, size - 1))[:max_windows]


def _span(cleaned: Cleaned, spans: Sequence[tuple[int, int]], first: int, last: int) -> tuple[int, int]:
    if first == last:
        return cleaned.original_span(0, 0)
    return cleaned.original_span(spans[first][0], spans[last - 1][1])


def score_pairs(
    reranker: Reranker,
    pairs: Sequence[tuple[str, str]],
    options: JobOptions,
    max_windows: int,
    in_line: InLine = alone,
) -> list[ScoredDocument]:
    """Score each (query, document) pair as its document's windows; one result per pair, in order.
    Everything but the forward passes runs before the batch stands `in_line` for the model."""
    prepare = clean if options.clean_html else identity
    max_length = reranker.effective_max_length(options.max_length)
    # each distinct text cleaned and tokenized once
    queries = {query: prepare(query).text for query in dict.fromkeys(query for query, _ in pairs)}
    query_ids = reranker.tokenize(queries.values())
    cut = reranker.query_max_length(max_length)
    documents = {document: prepare(document) for document in dict.fromkeys(d for _, d in pairs)}
    tokens = reranker.tokenize(cleaned.text for cleaned in documents.values())
    inputs: list[ModelInput] = []
    plans = []
    for query, document in pairs:
        full = query_ids[queries[query]]
        q_ids = full[:cut]
        ids = tokens[documents[document].text]
        ranges = _window_ranges(
            len(ids), reranker.document_budget(q_ids, max_length), options.chunking, max_windows
        )
        plans.append((len(inputs), ranges, document, len(full) > cut))
        inputs.extend(reranker.pair_input(q_ids, ids[a:b], max_length) for a, b in ranges)
    # Character spans are needed only where a document was cut (into windows, or truncated).
    cut_documents = list(
        dict.fromkeys(d for _, r, d, _ in plans if r != [(0, len(tokens[documents[d].text]))])
    )
    encoded = reranker.tokenize_spans([documents[d].text for d in cut_documents])
    spans = {document: offsets for document, (_, offsets) in zip(cut_documents, encoded, strict=True)}
    with in_line() as turn:
        raw = reranker.score_encoded(inputs, turn)
    scored = []
    for first, ranges, document, truncated in plans:
        cleaned = documents[document]
        scores = raw[first : first + len(ranges)]
        if document in spans:
            windows = [
                Window(*_span(cleaned, spans[document], a, b), s)
                for (a, b), s in zip(ranges, scores, strict=True)
            ]
        else:  # read whole: the window is the whole text
            windows = [Window(*cleaned.original_span(0, len(cleaned.text)), scores[0])]
        score, best = aggregate(scores, options.chunking.aggregate)
        scored.append(ScoredDocument(score, best, windows, truncated))
    return scored
