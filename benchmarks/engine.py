"""Engine throughput: rerankq's engine against FlagEmbedding's FlagReranker and sentence-transformers'
CrossEncoder on the same model and pairs, per dtype; ratios against the faster baseline.

    python -m benchmarks.engine --shapes base v2-m3 --dtypes fp32 bf16   # the README's table
    python -m benchmarks.engine --shapes trained --variants heldout --max-length 512   # short passages
    python -m benchmarks.engine --quick                                 # tiny model, under a minute

Shapes tiny, base and v2-m3 are random-weight models; `trained` is the fine-tuned MiniLM test model
(benchmarks.heldout), and the `heldout` variant its held-out DL19 pairs (short passages).
"""

import argparse
import gc
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers

from benchmarks.common import benchmark_parser, make_pairs, positive, random_model
from benchmarks.heldout import TRAINED_MODEL, load_heldout
from worker.engine import Pair, Reranker, load_reranker
from worker.engine.device import DTYPES

# name: (pairs, every n-th document long); --pairs overrides the count. `heldout`: the DL19 pairs.
VARIANTS = {"mixed": (16, 0), "long": (8, 4), "heldout": (2100, 0)}
BASELINES = ("FlagReranker", "CrossEncoder")
Scorer = Callable[[list[Pair]], list[float]]


@dataclass
class Row:
    shape: str
    variant: str
    dtype: str
    method: str
    seconds: float
    pairs: int
    tokens: int
    flops: float


def ours(path: Path, device: str, dtype: str, batch_tokens: int, max_length: int) -> tuple[Scorer, Reranker]:
    engine = load_reranker(str(path), device=device, dtype=dtype, batch_tokens=batch_tokens)
    return (lambda pairs: engine.score(pairs, max_length=max_length)), engine


def flag_reranker(path: Path, device: str, dtype: str, max_length: int) -> Scorer:
    """FlagReranker as its users call it (batch 128, its memory probe included): `use_fp16=True`
    for fp16, else fp32 weights cast to `dtype`."""
    from FlagEmbedding import FlagReranker

    flag = FlagReranker(str(path), use_fp16=dtype == "fp16", devices=device)
    if dtype != "fp16":
        flag.model.to(DTYPES[dtype])
    return lambda pairs: [float(s) for s in flag.compute_score(pairs, max_length=max_length)]


def cross_encoder(path: Path, device: str, dtype: str, max_length: int) -> Scorer:
    """CrossEncoder.predict with its defaults (batch 32), raw logits, weights cast to `dtype`."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(path), device=device, max_length=max_length, activation_fn=torch.nn.Identity())
    model.to(DTYPES[dtype])
    return lambda pairs: (
        model.predict(pairs, show_progress_bar=False, convert_to_tensor=True).float().tolist()
    )


def variant_pairs(variant: str, count: int | None) -> list[Pair]:
    """The pairs of a variant: seeded synthetic ones, or the first `count` held-out DL19 pairs."""
    default, long_every = VARIANTS[variant]
    if variant == "heldout":
        return load_heldout().pairs()[:count]
    return make_pairs(count or default, long_every)


def pair_lengths(engine: Reranker, pairs: list[Pair], max_length: int) -> list[int]:
    """Model-input tokens of each pair, truncated as every method here truncates it."""
    queries = engine.tokenize({q for q, _ in pairs}, engine.query_max_length(max_length))
    documents = engine.tokenize({d for _, d in pairs}, max_length)
    return [len(engine.pair_input(queries[q], documents[d], max_length).ids) for q, d in pairs]


def forward_flops(engine: Reranker, lengths: list[int]) -> float:
    """Useful forward FLOPs: 2 per encoder weight per token, plus QK^T and AV (4 x L^2 x hidden)
    per layer; padding is not useful work and is not counted."""
    config = engine.model.config
    weights = sum(p.numel() for name, p in engine.model.named_parameters() if ".layer." in name)
    attention = 4 * config.num_hidden_layers * config.hidden_size
    return float(sum(2 * weights * n + attention * n * n for n in lengths))


def timed(scorer: Scorer, pairs: list[Pair], repeats: int) -> tuple[float, list[float]]:
    """Best wall time of `repeats` runs after one warm-up on a few pairs (loading is not timed)."""
    scorer(pairs[:4])
    best = math.inf
    scores: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = scorer(pairs)
        best = min(best, time.perf_counter() - started)
    return best, scores


def matmul_peak(
    dtype: torch.dtype, device: str = "cpu", tokens: int = 4096, hidden: int = 1024, repeats: int = 10
) -> float:
    """This machine's measured matmul FLOP/s in `dtype`, best of `repeats`, through the op a linear
    layer runs (`F.linear`) on the shape of an XLM-R large feed-forward layer (tokens x hidden ->
    4 hidden): the physical limit the model's own matmuls can reach. On a GPU, a budget's worth of
    tokens (16384) in 16 products timed at once (one is too short to time). On a CPU the rows
    double from 16 while a product takes under 0.1 s, up to `tokens`: a CPU that emulates bf16 (no
    avx512_bf16) runs it at about 16 GFLOP/s here, and `a @ b` in bf16 at 0.35 (minutes a product)."""
    weight = torch.randn(4 * hidden, hidden, dtype=dtype, device=device)
    if device.startswith("cuda"):
        rows, products = 16384, 16
    else:
        rows, products = 16, 1
        while rows < tokens:
            started = time.perf_counter()
            F.linear(torch.randn(rows, hidden, dtype=dtype), weight)
            if time.perf_counter() - started >= 0.1:
                break
            rows *= 2
    x = torch.randn(rows, hidden, dtype=dtype, device=device)
    F.linear(x, weight)
    best = math.inf
    for _ in range(repeats):
        synchronize(device)
        started = time.perf_counter()
        for _ in range(products):
            F.linear(x, weight)
        synchronize(device)
        best = min(best, (time.perf_counter() - started) / products)
    return 2 * rows * hidden * 4 * hidden / best


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def max_delta(a: list[float], b: list[float], f: Callable[[float], float] = float) -> float:
    return max(abs(f(x) - f(y)) for x, y in zip(a, b, strict=True))


def run_dtype(
    path: Path, shape: str, dtype: str, jobs: dict[str, list[Pair]], args: argparse.Namespace
) -> tuple[list[Row], dict[str, dict[str, list[float]]]]:
    """Every method on every variant in one dtype; the scores too, for the parity checks."""
    rows: list[Row] = []
    scores: dict[str, dict[str, list[float]]] = {}
    score, engine = ours(path, args.device, dtype, args.batch_tokens, args.max_length)
    methods: dict[str, Callable[[], Scorer]] = {
        "rerankq": lambda: score,
        "FlagReranker": lambda: flag_reranker(path, args.device, dtype, args.max_length),
        "CrossEncoder": lambda: cross_encoder(path, args.device, dtype, args.max_length),
    }
    for method, build in methods.items():
        try:
            scorer = build()
        except Exception as error:  # a baseline that cannot run here (not installed, or broken) is skipped
            print(f"  {method} {dtype} unavailable: {type(error).__name__}: {error}", flush=True)
            continue
        for variant, pairs in jobs.items():
            lengths = pair_lengths(engine, pairs, args.max_length)
            seconds, scores.setdefault(method, {})[variant] = timed(scorer, pairs, args.repeats)
            flops = forward_flops(engine, lengths)
            rows.append(Row(shape, variant, dtype, method, seconds, len(pairs), sum(lengths), flops))
            print(f"  {shape} {variant} {dtype} {method}: {seconds:.2f}s", flush=True)
        del scorer
        gc.collect()
    return rows, scores


def table(rows: list[Row], peaks: dict[str, float]) -> str:
    """The markdown table: throughput, ratios to the faster baseline (same dtype, and fp32), FLOP/s."""

    def baseline(row: Row, dtype: str) -> float | None:
        key = (row.shape, row.variant, dtype)
        times = [r.seconds for r in rows if r.method in BASELINES and (r.shape, r.variant, r.dtype) == key]
        return min(times) if times else None

    lines = [
        "| shape | pairs | dtype | method | pairs/s | tokens/s | × baseline (same dtype) | × fp32 baseline "
        "| useful GFLOP/s | % of matmul peak |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same, fp32 = baseline(r, r.dtype), baseline(r, "fp32")
        ratio = f"{same / r.seconds:.2f}" if same else "n/a"
        ratio32 = f"{fp32 / r.seconds:.2f}" if fp32 else "n/a"
        achieved = r.flops / r.seconds
        lines.append(
            f"| {r.shape} | {r.variant} ({r.pairs}, {r.tokens} tok) | {r.dtype} | {r.method} "
            f"| {r.pairs / r.seconds:.2f} | {r.tokens / r.seconds:.0f} | {ratio} | {ratio32} "
            f"| {achieved / 1e9:.1f} | {100 * achieved / peaks[r.dtype]:.0f}% |"
        )
    return "\n".join(lines)


def fidelity(shape: str, scores: dict[str, dict[str, dict[str, list[float]]]]) -> list[str]:
    """Ours against FlagReranker in the same dtype (raw logits, where it ran), and our bf16 and fp16
    against our fp32 (sigmoid)."""
    lines = []
    for dtype, by_method in scores.items():
        for variant, ours_scores in by_method["rerankq"].items():
            if flag := by_method.get("FlagReranker", {}).get(variant):
                lines.append(
                    f"parity {shape} {variant} {dtype}: max |Δ raw| rerankq vs FlagReranker = "
                    f"{max_delta(ours_scores, flag):.2e}"
                )
            if dtype != "fp32" and (ours32 := scores.get("fp32", {}).get("rerankq", {}).get(variant)):
                lines.append(
                    f"fidelity {shape} {variant} {dtype}: max |Δ sigmoid| rerankq {dtype} vs fp32 = "
                    f"{max_delta(ours_scores, ours32, sigmoid):.4f}"
                )
    return lines


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument(
        "--shapes", nargs="+", default=["base", "v2-m3"], choices=["tiny", "base", "v2-m3", "trained"]
    )
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N, every method")
    parser.add_argument("--variants", nargs="+", default=["mixed", "long"], choices=list(VARIANTS))
    parser.add_argument("--max-length", type=positive, default=1024, help="tokens per pair, every method")
    parser.add_argument("--pairs", type=positive, help="pairs per variant (default: 16 mixed, 8 long)")
    parser.add_argument("--repeats", type=positive, default=1, help="timed runs per method; the best counts")
    parser.add_argument("--batch-tokens", type=positive, default=16384, help="rerankq's padded-token budget")
    parser.add_argument(
        "--threads", type=positive, default=torch.get_num_threads(), help="torch threads, all methods"
    )
    parser.add_argument("--cache", type=Path, default=Path(".models"), help="where the models are built")
    parser.add_argument("--quick", action="store_true", help="tiny model, few pairs: a smoke run")
    parser.add_argument(
        "--require", nargs="+", default=[], choices=BASELINES, help="exit 1 if one of these could not run"
    )
    args = parser.parse_args()
    if args.quick:
        args.shapes, args.pairs = ["tiny"], args.pairs or 8
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    peaks = {dtype: matmul_peak(DTYPES[dtype], args.device) for dtype in args.dtypes}
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, {args.device}, "
        f"{args.threads} threads, max_length {args.max_length}; "
        "matmul peak: " + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in peaks.items()),
        flush=True,
    )
    jobs = {v: variant_pairs(v, args.pairs) for v in args.variants}
    rows: list[Row] = []
    checks: list[str] = []
    for shape in args.shapes:
        path = TRAINED_MODEL if shape == "trained" else random_model(args.cache, shape)
        scores = {}
        for dtype in args.dtypes:
            found, scores[dtype] = run_dtype(path, shape, dtype, jobs, args)
            rows += found
        checks += fidelity(shape, scores)
    print(
        "baselines run in the same dtype as rerankq (weights cast); "
        "× baseline = the faster of FlagReranker and CrossEncoder"
    )
    print("\n".join(checks))
    print(table(rows, peaks))
    if missing := set(args.require) - {row.method for row in rows}:
        sys.exit(f"required baselines did not run: {', '.join(sorted(missing))}")


if __name__ == "__main__":
    main()
