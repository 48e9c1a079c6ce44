"""Prometheus metrics of the API: what this process served (requests by route and code, the
latency of synchronous rerank requests) and, at each scrape, the service's state (worker.stats)."""

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from worker.stats import ServiceStats

# A synchronous request spans a queue round trip or three and a small batch: tens of ms when a
# worker is idle, up to a batch's time behind an overnight job, and RERANK_SYNC_TIMEOUT at most.
SYNC_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ApiMetrics:
    """One app's HTTP metrics, in a registry of its own (several apps may live in one process)."""

    def __init__(self, sync_routes: tuple[str, ...]) -> None:
        self.registry = CollectorRegistry()
        self.sync_routes = sync_routes
        self.requests = Counter(
            "rerankq_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "code"],
            registry=self.registry,
        )
        self.sync_seconds = Histogram(
            "rerankq_sync_request_seconds",
            "Seconds from receiving a synchronous rerank request to answering it.",
            ["route"],
            buckets=SYNC_BUCKETS,
            registry=self.registry,
        )

    def middleware(
        self,
    ) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
        async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            started = time.perf_counter()
            code = 500
            try:
                response = await call_next(request)
                code = response.status_code
                return response
            finally:
                route = getattr(request.scope.get("route"), "path", "unmatched")
                self.requests.labels(request.method, route, str(code)).inc()
                if route in self.sync_routes:
                    self.sync_seconds.labels(route).observe(time.perf_counter() - started)

        return record

    def render(self, stats: ServiceStats) -> bytes:
        """This process's metrics and the service's state, in Prometheus' text format."""
        scrape = CollectorRegistry()
        scrape.register(_StatsCollector(stats))
        return generate_latest(self.registry) + generate_latest(scrape)


class _StatsCollector(Collector):
    def __init__(self, stats: ServiceStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        stats = self.stats
        jobs = GaugeMetricFamily("rerankq_jobs", "Jobs in the database, by status.", labels=["status"])
        for status in ("queued", "running", "completed", "failed", "cancelled"):
            jobs.add_metric([status], stats.jobs.get(status, 0))
        yield jobs
        for name, value, what in (
            ("submitted", stats.pairs_submitted, "submitted in jobs"),
            ("scored", stats.pairs_scored, "scored"),
            ("failed", stats.pairs_failed, "whose batch failed"),
        ):
            yield CounterMetricFamily(
                f"rerankq_pairs_{name}", f"(query, document) pairs {what}.", value=value
            )
        yield GaugeMetricFamily(
            "rerankq_broker_up",
            "Whether Redis answered this scrape (0: no queue depth).",
            value=0 if stats.queue_depth is None else 1,
        )
        depth = GaugeMetricFamily(
            "rerankq_queue_depth",
            'Tasks waiting in Redis, by queue (the base queue, model "": plan, finalize and'
            " webhook tasks; each model's batch queue) and priority.",
            labels=["queue", "model", "priority"],
        )
        for waiting in stats.queue_depth or []:
            depth.add_metric([waiting.queue, waiting.model, waiting.priority.value], waiting.tasks)
        yield depth
        yield GaugeMetricFamily(
            "rerankq_oldest_queued_batch_age_seconds",
            "Seconds the longest-waiting batch on the queue has waited (0: none waits).",
            value=stats.oldest_queued_batch_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            "rerankq_score_cache_entries",
            "Pairs whose scores the score cache keeps.",
            value=stats.score_cache_entries,
        )
