"""The trained test model and its held-out evaluation set: the 21 TREC DL 2019 queries that did not
train /work/shared/models/minilm-l6-rerank, each with its bi-encoder top-100 and graded judgements
(see the data's README). nDCG@10 comes from ir-measures (unjudged passages count as non-relevant)."""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SHARED = Path("/work/shared")
TRAINED_MODEL = SHARED / "models" / "minilm-l6-rerank"
HELDOUT = SHARED / "data" / "dl19-rerank-eval"


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    text: str


@dataclass(frozen=True)
class HeldoutQuery:
    query_id: str
    text: str
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Heldout:
    """The held-out queries in file order, and their judgements: query id -> doc id -> grade."""

    queries: tuple[HeldoutQuery, ...]
    qrels: dict[str, dict[str, int]]

    def pairs(self) -> list[tuple[str, str]]:
        """Every (query, passage) pair, query by query, candidates in first-stage order."""
        return [(q.text, c.text) for q in self.queries for c in q.candidates]

    def run(self, scores: Sequence[float]) -> dict[str, dict[str, float]]:
        """`scores` (in `pairs()` order) as a run: query id -> doc id -> score."""
        it = iter(scores)
        return {q.query_id: {c.doc_id: next(it) for c in q.candidates} for q in self.queries}

    def per_query(self, scores: Sequence[float]) -> list[list[float]]:
        """`scores` (in `pairs()` order) cut into one list per query."""
        it = iter(scores)
        return [[next(it) for _ in q.candidates] for q in self.queries]

    def ndcg10(self, scores: Sequence[float]) -> float:
        """Mean nDCG@10 over the held-out queries of the ranking `scores` gives (ir-measures is
        imported here: benchmarks.engine runs without it, on the GPU machine too)."""
        import ir_measures

        ndcg10 = ir_measures.nDCG @ 10
        return float(ir_measures.calc_aggregate([ndcg10], self.qrels, self.run(scores))[ndcg10])


def load_heldout(root: Path = HELDOUT, limit: int | None = None) -> Heldout:
    """The held-out queries (test_qids.txt) with their candidates; the first `limit` if given."""
    wanted = (root / "test_qids.txt").read_text().split()
    lines = [json.loads(line) for line in (root / "candidates.jsonl").read_text().splitlines()]
    by_id = {str(row["query_id"]): row for row in lines}
    queries = tuple(
        HeldoutQuery(
            query_id=qid,
            text=by_id[qid]["query"],
            candidates=tuple(Candidate(str(c["doc_id"]), c["text"]) for c in by_id[qid]["candidates"]),
        )
        for qid in wanted[:limit]
    )
    qrels: dict[str, dict[str, int]] = {}
    for line in (root / "qrels.tsv").read_text().splitlines()[1:]:
        qid, doc_id, grade = line.split("\t")
        qrels.setdefault(qid, {})[doc_id] = int(grade)
    return Heldout(queries, {q.query_id: qrels.get(q.query_id, {}) for q in queries})
