"""Long documents through the pipeline (SQLite and PostgreSQL, no broker): a passage planted after
token 1,500 is found by chunking and missed by truncation, and the ranking changes with it; the
window limit and query truncation show in the results.

The model has random weights, so the planted passage and the competing document are picked with
the model itself: the assertions are about chunking, not about what the weights know."""

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tests.integration.helpers import TINY, results, run_all
from worker import service
from worker.engine import Reranker
from worker.scoring import score_pairs
from worker.spec import JobOptions, JobSpec

QUERY = "How do I drop rows with missing values in a pandas DataFrame?"
CORPUS = (Path(__file__).parents[2] / "worker/engine/corpus.txt").read_text(encoding="utf-8").splitlines()
# max_tokens above what fits beside the query: each window is exactly the pair truncation reads,
# so the first window's score is the truncated document's score.
OPTIONS: dict[str, Any] = {"max_length": 256, "chunking": {"max_tokens": 1024, "overlap": 32}}


def token_count(reranker: Reranker, text: str) -> int:
    [(ids, _)] = reranker.tokenize_spans([text])
    return len(ids)


def planted_document(reranker: Reranker, filler_tokens: int = 1600) -> tuple[str, str]:
    """(long document, competitor): the long document's best window starts after token 1,500 and
    outscores its first window; the competitor's score lies between the two."""
    options = JobOptions.model_validate(OPTIONS)
    filler = " ".join(line for line in CORPUS if "pandas" not in line.lower())
    while token_count(reranker, filler) < filler_tokens:
        filler += " " + filler
    [(_, spans)] = reranker.tokenize_spans([filler])
    lead = filler[: spans[filler_tokens][0]]
    for planted in CORPUS:
        document = f"{lead} {planted} {planted} {planted}"
        scored = score_pairs(reranker, [(QUERY, document)], options, max_windows=128)[0]
        best, first = scored.windows[scored.best], scored.windows[0]
        token_start = token_count(reranker, document[: best.start])
        if token_start < 1500 or best.raw_score - first.raw_score < 0.05:
            continue
        middle = (best.raw_score + first.raw_score) / 2
        competitors = [
            (abs(s - middle), text)
            for text, s in zip(CORPUS, reranker.score([(QUERY, c) for c in CORPUS], 256), strict=True)
        ]
        gap, competitor = min(competitors)
        if gap < (best.raw_score - first.raw_score) / 4:
            return document, competitor
    raise AssertionError("no planted passage outscores the filler with this model")


def rank_of(
    session: Session, reranker: Reranker, documents: dict[str, str], **options: Any
) -> list[dict[str, Any]]:
    spec = JobSpec.model_validate(
        {
            "queries": [
                {"id": "q", "text": QUERY, "documents": [{"id": k, "text": v} for k, v in documents.items()]}
            ],
            "options": options,
        }
    )
    job_id = service.submit_job(session, spec, TINY).id
    run_all(session, job_id, reranker)
    return results(session, job_id, include_chunks=True)


def test_chunking_finds_a_passage_after_token_1500(session: Session, reranker: Reranker) -> None:
    document, competitor = planted_document(reranker)
    documents = {"manual": document, "faq": competitor}

    chunked = {r["document_id"]: r for r in rank_of(session, reranker, documents, **OPTIONS)}
    truncated_options = {**OPTIONS, "chunking": {**OPTIONS["chunking"], "enabled": False}}
    truncated = {r["document_id"]: r for r in rank_of(session, reranker, documents, **truncated_options)}

    manual = chunked["manual"]
    windows = manual["chunk_scores"]
    assert manual["chunks"] == len(windows) > 7
    assert manual["raw_score"] == max(w["raw_score"] for w in windows)
    best = manual["best_chunk"]
    assert best["index"] > 0 and best["text"] == document[best["start"] : best["end"]]
    assert token_count(reranker, document[: best["start"]]) >= 1500
    # truncation reads the first window only, and gets exactly its score
    assert truncated["manual"]["chunks"] == 1
    assert abs(truncated["manual"]["raw_score"] - windows[0]["raw_score"]) < 1e-5
    assert truncated["manual"]["raw_score"] < truncated["faq"]["raw_score"] < manual["raw_score"]
    assert (chunked["manual"]["rank"], chunked["faq"]["rank"]) == (1, 2)
    assert (truncated["manual"]["rank"], truncated["faq"]["rank"]) == (2, 1)
    assert abs(truncated["faq"]["raw_score"] - chunked["faq"]["raw_score"]) < 1e-5


def test_windows_are_capped_and_spans_are_substrings(session: Session, reranker: Reranker) -> None:
    text = " ".join(CORPUS * 3)
    spec = JobSpec.model_validate(
        {
            "queries": [{"id": "q", "text": QUERY, "documents": [{"id": "d", "text": text}]}],
            "options": OPTIONS,
        }
    )
    job_id = service.submit_job(session, spec, TINY).id
    run_all(session, job_id, reranker, max_windows=3)
    [row] = results(session, job_id, include_chunks=True)
    assert row["chunks"] == 3 == len(row["chunk_scores"])
    assert all(text[w["start"] : w["end"]] for w in row["chunk_scores"])
    assert row["chunk_scores"][0]["start"] == 0 and row["chunk_scores"][-1]["end"] < len(text)


def test_a_long_query_is_cut_and_the_result_says_so(session: Session, reranker: Reranker) -> None:
    spec = JobSpec.model_validate(
        {
            "queries": [
                {"id": "long", "text": " ".join(CORPUS), "documents": [{"id": "d", "text": "short"}]},
                {"id": "short", "text": QUERY, "documents": [{"id": "d", "text": "short"}]},
            ],
            "options": {"max_length": 64},
        }
    )
    job_id = service.submit_job(session, spec, TINY).id
    run_all(session, job_id, reranker)
    flags = {r["query_id"]: r["query_truncated"] for r in results(session, job_id)}
    assert flags == {"long": True, "short": False}
