"""A worker's Prometheus metrics (`rerankq worker --metrics-port N`): batch latency and size,
pairs and tokens scored and their rate, out-of-memory splits, the model it holds, GPU memory."""

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.engine import Reranker

log = logging.getLogger(__name__)

BATCH_SECONDS = Histogram(
    "rerankq_worker_batch_seconds",
    "Seconds to score one batch (read, clean, window, model, store).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
BATCH_PAIRS = Histogram(
    "rerankq_worker_batch_pairs",
    "(query, document) pairs per scored batch.",
    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024, 4096),
)
PAIRS = Counter("rerankq_worker_pairs", "(query, document) pairs scored by this worker.")
PAIRS_PER_SECOND = Gauge("rerankq_worker_pairs_per_second", "Pairs per second of the last batch.")
TOKENS_PER_SECOND = Gauge(
    "rerankq_worker_tokens_per_second", "Model input tokens per second of the last batch."
)


def observe_batch(pairs: int, tokens: int, seconds: float) -> None:
    """Count one scored batch (a no-op cost when no one scrapes, e.g. `rerankq run`)."""
    BATCH_SECONDS.observe(seconds)
    BATCH_PAIRS.observe(pairs)
    PAIRS.inc(pairs)
    PAIRS_PER_SECOND.set(pairs / max(seconds, 1e-9))
    TOKENS_PER_SECOND.set(tokens / max(seconds, 1e-9))


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
