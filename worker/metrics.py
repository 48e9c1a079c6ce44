"""A worker's Prometheus metrics (`rerankq worker --metrics-port N`): batch latency and size,
pairs and tokens scored and their rate, out-of-memory splits, the model it holds, GPU memory."""

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.engine import Reranker

log = logging.getLogger(__name__)

BATCH_SECONDS = Histogram(
    "rerankq_worker_batch_seconds",
    "Seconds to score one batch (read, clean, window, wait for and run the model, store).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
BATCH_PAIRS = Histogram(
    "rerankq_worker_batch_pairs",
    "(query, document) pairs per scored batch.",
    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
PAIRS = Counter("rerankq_worker_pairs", "(query, document) pairs scored by this worker.")
PAIRS_PER_SECOND = Gauge(
    "rerankq_worker_pairs_per_second", "Pairs per second of this worker, as of its last batch."
)
TOKENS_PER_SECOND = Gauge(
    "rerankq_worker_tokens_per_second", "Model input tokens per second of this worker, as of its last batch."
)


class Pace:
    """A worker's rate as of its last batch. Its batches overlap when it holds several, so the
    period is the time since the previous batch finished, or the batch's own time when shorter (the
    worker was idle before it) or when the engine counted nothing since (this batch's forward pass
    ran before the previous batch finished); tokens are the engine's count over that period."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[float, int] | None = None  # (when, engine tokens) at the last batch's end

    def period(self, batch_seconds: float, tokens_scored: int) -> tuple[float, int]:
        """(seconds, tokens) of the period that ended with this batch."""
        now = time.perf_counter()
        with self._lock:
            last, self._last = self._last, (now, tokens_scored)
        if last is None or now - last[0] > batch_seconds or tokens_scored <= last[1]:
            return batch_seconds, -1
        return now - last[0], tokens_scored - last[1]


_pace = Pace()


def observe_batch(pairs: int, tokens: int, seconds: float, tokens_scored: int) -> None:
    """Count one scored batch of `tokens` model input tokens (a no-op cost when no one scrapes,
    e.g. `rerankq run`); `tokens_scored` is the engine's count since loading."""
    BATCH_SECONDS.observe(seconds)
    BATCH_PAIRS.observe(pairs)
    PAIRS.inc(pairs)
    period, period_tokens = _pace.period(seconds, tokens_scored)
    PAIRS_PER_SECOND.set(pairs / max(period, 1e-9))
    TOKENS_PER_SECOND.set((tokens if period_tokens < 0 else period_tokens) / max(period, 1e-9))


class _EngineCollector(Collector):
    """The engine's own counters, read at scrape time."""

    def __init__(self, reranker: Reranker) -> None:
        self.reranker = reranker

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        reranker = self.reranker
        yield CounterMetricFamily(
            "rerankq_worker_tokens",
            "Model input tokens scored (padding excluded).",
            value=reranker.tokens_scored,
        )
        yield CounterMetricFamily(
            "rerankq_worker_oom_splits",
            "Batches split in two after running out of device memory.",
            value=reranker.oom_splits,
        )
        memory = GaugeMetricFamily(
            "rerankq_worker_gpu_memory_bytes",
            "GPU memory held by this worker (none on a CPU).",
            labels=["kind"],
        )
        if reranker.device.type == "cuda":
            import torch  # only here: a CPU worker's metrics never touch CUDA

            memory.add_metric(["allocated"], torch.cuda.memory_allocated(reranker.device))
            memory.add_metric(["reserved"], torch.cuda.memory_reserved(reranker.device))
        yield memory


def register(reranker: Reranker) -> None:
    """Add the model this process holds and the engine's counters to its metrics."""
    Info("rerankq_worker_model", "The model this worker holds.").info(
        {
            "model": reranker.name,
            "device": str(reranker.device),
            "dtype": str(reranker.dtype).removeprefix("torch."),
        }
    )
    REGISTRY.register(_EngineCollector(reranker))


def serve(port: int, reranker: Reranker) -> None:
    """Expose this worker's metrics on http://0.0.0.0:`port`/metrics (a background thread)."""
    register(reranker)
    start_http_server(port)
    log.info("worker metrics on port %d", port)
