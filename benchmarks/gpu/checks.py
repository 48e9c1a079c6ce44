"""Two checks of benchmarks/gpu/run.sh that are not throughput: what `auto` picks on this machine,
and the out-of-memory split under a token budget far too large for the device.

    python -m benchmarks.gpu.checks --device cuda --shape v2-m3

On CUDA the process is capped (torch.cuda.set_per_process_memory_fraction) to the loaded model plus
`--headroom-gib`, so one batch of every pair cannot fit and really runs out of memory. A CPU has no
such cap (and a real out-of-memory there is the kernel's OOM killer), so on CPU the cap is simulated:
a batch over the budget's normal size raises torch.OutOfMemoryError, as the unit test does."""

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from benchmarks.common import add_model_options, benchmark_parser, make_pairs, positive, random_model
from worker.engine import Reranker, load_reranker

MAX_LENGTH = 1024


class Splits(logging.Handler):
    """Counts the engine's 'out of memory ... splitting' warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "out of memory" in record.getMessage()


def check_auto(model: Path) -> bool:
    """`auto` picks CUDA with fp16 where CUDA is usable, else the CPU in its documented precision."""
    engine = load_reranker(str(model), device="auto", dtype="auto")
    expected = (
        ("cuda", torch.float16)
        if torch.cuda.is_available()
        else ("cpu", torch.float32)  # see worker/engine/device.py: bf16 did not keep the ranking
    )
    ok = (engine.device.type, engine.dtype) == expected
    verdict = "ok" if ok else "FAIL"
    print(f"auto: {engine.device} {engine.dtype} (expected {expected[0]} {expected[1]}): {verdict}")
    return ok


@contextmanager
def memory_cap(engine: Reranker, headroom_gib: float, tokens: int) -> Iterator[str]:
    """A device that holds the model plus `headroom_gib` (CUDA), or a batch of at most `tokens`
    padded tokens (CPU, simulated); yields a line that says which."""
    if engine.device.type == "cuda":
        index = torch.cuda.current_device() if engine.device.index is None else engine.device.index
        total = torch.cuda.get_device_properties(index).total_memory
        allowed = torch.cuda.memory_allocated(index) + headroom_gib * 2**30
        torch.cuda.set_per_process_memory_fraction(allowed / total, index)  # wants an index, not "cuda"
        try:
            yield f"CUDA capped at {allowed / 2**30:.1f} GiB (model + {headroom_gib} GiB)"
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, index)
        return
    forward = engine.model.forward

    def capped(*args: object, **kwargs: torch.Tensor) -> object:
        if kwargs["input_ids"].numel() > tokens:
            raise torch.OutOfMemoryError(f"simulated: over {tokens} padded tokens")
        return forward(*args, **kwargs)

    engine.model.forward = capped
    try:
        yield f"CPU, out-of-memory simulated above {tokens} padded tokens per batch"
    finally:
        engine.model.forward = forward


def check_oom_split(model: Path, device: str, pairs: int, headroom_gib: float) -> bool:
    """The same pairs scored under the normal budget and under one that puts every pair in one
    batch on a device that cannot hold it: the batch is split (logged) and the scores agree."""
    # eager, as on a GPU: the CPU rehearsal's simulated cap wraps the eager model's forward
    engine = load_reranker(str(model), device=device, dtype="auto", trace=False)
    work = make_pairs(pairs, long_every=2, seed=3)
    expected = engine.score(work, max_length=MAX_LENGTH)
    normal = engine.batch_tokens
    splits = Splits()
    logging.getLogger("worker.engine.reranker").addHandler(splits)
    with memory_cap(engine, headroom_gib, normal) as cap:
        engine.batch_tokens = pairs * MAX_LENGTH
        got = engine.score(work, max_length=MAX_LENGTH)
    engine.batch_tokens = normal
    delta = max(abs(a - b) for a, b in zip(got, expected, strict=True))
    # fp16 sums in another order when the batch neighbours change; fp32 agrees to rounding.
    tolerance = 1e-4 if engine.dtype == torch.float32 else 5e-2
    ok = splits.count > 0 and delta <= tolerance
    print(
        f"out-of-memory split: {pairs} pairs under a budget of {pairs * MAX_LENGTH} padded tokens "
        f"(normal {normal}); {cap}; {splits.count} splits logged; max |Δ raw| vs the normal budget "
        f"{delta:.2e} (tolerance {tolerance}): {'ok' if ok else 'FAIL'}"
    )
    return ok


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--pairs", type=positive, default=512, help="pairs of the oversized batch")
    parser.add_argument("--headroom-gib", type=float, default=2.0, help="CUDA memory beside the model")
    add_model_options(parser, shape="v2-m3")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = random_model(args.cache, args.shape)
    results = [check_auto(model), check_oom_split(model, args.device, args.pairs, args.headroom_gib)]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
