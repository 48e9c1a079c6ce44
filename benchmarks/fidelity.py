"""Fidelity of lower precisions on a trained reranker: every held-out DL19 pair scored by rerankq's
engine in fp32 and in each other precision, in one run. Per precision: max |Δ sigmoid| against fp32,
per-query Spearman of the scores against fp32 (min and mean), nDCG@10 (ir-measures) and pairs/s.

    python -m benchmarks.fidelity                              # CPU: fp32, bf16, int8
    python -m benchmarks.fidelity --device cuda --precisions fp32 fp16 bf16

int8 is dynamic quantization of the Linear layers (torch.ao, CPU only); fp16 runs on CUDA only.
The rule for `auto` on a CPU with native bf16: nDCG@10 within 0.005 of fp32 and min Spearman >= 0.99.
"""

import argparse
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from scipy.stats import spearmanr

from benchmarks.common import benchmark_parser, positive
from benchmarks.heldout import TRAINED_MODEL, Heldout, load_heldout
from worker.engine import Reranker, load_reranker

NDCG_TOLERANCE = 0.005
MIN_SPEARMAN = 0.99


@dataclass(frozen=True)
class Fidelity:
    precision: str
    max_delta_sigmoid: float
    spearman_min: float
    spearman_mean: float
    ndcg10: float
    pairs_per_second: float

    def holds(self, reference: "Fidelity") -> bool:
        """The issue's rule for making a precision the default: ranking quality kept."""
        return abs(self.ndcg10 - reference.ndcg10) <= NDCG_TOLERANCE and self.spearman_min >= MIN_SPEARMAN


def engine_for(model: Path, precision: str, device: str) -> Reranker:
    """rerankq's engine in `precision`; int8 is the fp32 engine with its Linear layers quantized."""
    dtype = "fp32" if precision == "int8" else precision
    engine = load_reranker(str(model), device=device, dtype=dtype)
    if precision == "int8":
        engine.model = torch.ao.quantization.quantize_dynamic(
            engine.model, {torch.nn.Linear}, dtype=torch.qint8
        )
    return engine


def timed_scores(
    engine: Reranker, pairs: list[tuple[str, str]], max_length: int
) -> tuple[list[float], float]:
    """Scores of every pair and pairs/s, after a warm-up on a few pairs."""
    engine.score(pairs[:8], max_length=max_length)
    started = time.perf_counter()
    scores = engine.score(pairs, max_length=max_length)
    return scores, len(pairs) / (time.perf_counter() - started)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def compare(precision: str, data: Heldout, scores: list[float], fp32: list[float], rate: float) -> Fidelity:
    """One precision's scores against fp32's on the same pairs."""
    rhos = [
        float(spearmanr(ours, ref).statistic)
        for ours, ref in zip(data.per_query(scores), data.per_query(fp32), strict=True)
    ]
    return Fidelity(
        precision=precision,
        max_delta_sigmoid=max(abs(sigmoid(a) - sigmoid(b)) for a, b in zip(scores, fp32, strict=True)),
        spearman_min=min(rhos),
        spearman_mean=sum(rhos) / len(rhos),
        ndcg10=data.ndcg10(scores),
        pairs_per_second=rate,
    )


def table(rows: list[Fidelity]) -> str:
    lines = [
        "| precision | max \\|Δ sigmoid\\| vs fp32 | Spearman min | Spearman mean | nDCG@10 | pairs/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.precision} | {r.max_delta_sigmoid:.4f} | {r.spearman_min:.4f} | {r.spearman_mean:.4f} "
        f"| {r.ndcg10:.4f} | {r.pairs_per_second:.1f} |"
        for r in rows
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> list[Fidelity]:
    """Every precision of `args.precisions` over the held-out pairs, fp32 first (the reference)."""
    data = load_heldout(limit=args.queries)
    pairs = data.pairs()
    reference: list[float] = []
    rows: list[Fidelity] = []
    for precision in ["fp32", *[p for p in args.precisions if p != "fp32"]]:
        engine = engine_for(args.model, precision, args.device)
        scores, rate = timed_scores(engine, pairs, args.max_length)
        reference = reference or scores
        rows.append(compare(precision, data, scores, reference, rate))
        print(f"  {precision}: {rate:.1f} pairs/s", flush=True)
        del engine
    return rows


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--model", type=Path, default=TRAINED_MODEL)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8"])
    parser.add_argument("--max-length", type=positive, default=512)
    parser.add_argument("--queries", type=positive, help="the first N held-out queries (default: all 21)")
    parser.add_argument("--threads", type=positive, default=torch.get_num_threads())
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, max_length {args.max_length}")
    rows = measure(args)
    print(table(rows))
    for row in rows[1:]:
        verdict = "holds" if row.holds(rows[0]) else "fails"
        print(
            f"{row.precision} {verdict}: nDCG@10 {row.ndcg10 - rows[0].ndcg10:+.4f} vs fp32 "
            f"(tolerance {NDCG_TOLERANCE}), min Spearman {row.spearman_min:.4f} (needs >= {MIN_SPEARMAN})"
        )


if __name__ == "__main__":
    main()
