"""Why a worker's forward passes run slower than the engine's own on a small model: the same padded
batches through the model alone, and beside a Python thread that keeps the interpreter busy (a
stand-in, at its worst, for a worker's second batch being read, tokenized and written), eager and
traced with torch.jit.trace (whose graph runs in C++ without taking the interpreter lock back
after every op). Prints the medians over --rounds, the ratios against eager alone measured in the
same run, and the largest logit difference between the two.

    python -m benchmarks.forward_contention --pairs 5000 --shape tiny

Why the engine traces its CPU forward passes (Reranker.trace): this traces the model the same way,
beside an eager copy, to measure what that buys."""

import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from statistics import median

import torch

from benchmarks.common import add_model_options, benchmark_parser, make_pairs, positive, random_model
from worker.engine import load_reranker

Inputs = dict[str, torch.Tensor]


@contextmanager
def busy_interpreter() -> Iterator[None]:
    """A thread running Python bytecode without pause, until the block ends."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def timed(
    forward: Callable[[Inputs], torch.Tensor], batches: list[Inputs]
) -> tuple[float, list[torch.Tensor]]:
    started = time.perf_counter()
    with torch.inference_mode():
        logits = [forward(batch) for batch in batches]
    return time.perf_counter() - started, logits


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--pairs", type=positive, default=5_000)
    parser.add_argument("--batch", type=positive, default=128, help="pairs per forward pass")
    parser.add_argument("--threads", type=positive, default=2, help="torch threads")
    parser.add_argument("--rounds", type=positive, default=3)
    add_model_options(parser, shape="tiny")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model_path = str(random_model(args.cache, args.shape))
    reranker = load_reranker(model_path, device="cpu", dtype="fp32", trace=False)  # traced below
    pairs = sorted(make_pairs(args.pairs, seed=5), key=lambda pair: len(pair[0]) + len(pair[1]))
    tokenizer, model = reranker.tokenizer, reranker.model
    chunks = [pairs[i : i + args.batch] for i in range(0, len(pairs), args.batch)]
    batches = [
        dict(
            tokenizer(
                [q for q, _ in c], [d for _, d in c], padding=True, truncation=True, return_tensors="pt"
            )
        )
        for c in chunks
    ]
    # traced on a padded batch, so the attention mask stays in the graph
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes seen once: known, not news
        traced = torch.jit.trace(model, example_kwarg_inputs=batches[-1], strict=False)

    ways: dict[str, Callable[[Inputs], torch.Tensor]] = {
        "eager (baseline)": lambda batch: model(**batch).logits.view(-1),
        "torch.jit.trace": lambda batch: traced(**batch)["logits"].view(-1),
    }
    seconds: dict[tuple[str, bool], list[float]] = {
        (name, busy): [] for name in ways for busy in (False, True)
    }
    difference = 0.0
    for _ in range(args.rounds):
        for busy in (False, True):
            logits = {}
            for name, forward in ways.items():
                with busy_interpreter() if busy else nullcontext():
                    took, logits[name] = timed(forward, batches)
                seconds[name, busy].append(took)
            difference = max(
                difference,
                *((a - b).abs().max().item() for a, b in zip(*logits.values(), strict=True)),
            )
    base = median(seconds["eager (baseline)", False])
    print(
        f"| {args.pairs:,} pairs, random {args.shape}, {args.threads} threads | alone | x baseline "
        "| beside a busy Python thread | x baseline |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ways:
        alone, beside = median(seconds[name, False]), median(seconds[name, True])
        print(f"| {name} | {alone:.2f} s | {base / alone:.2f}x | {beside:.2f} s | {base / beside:.2f}x |")
    print(f"max |Δ logit| traced vs eager: {difference:.2e}")


if __name__ == "__main__":
    main()
