"""The monitoring profile's files agree with the code: compose parses and runs Flower,
Prometheus and Grafana under `monitoring`; Prometheus scrapes the ports rerankq serves metrics
on; every metric the dashboard plots is one rerankq exposes."""

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import ApiMetrics
from api.routes.compat import SYNC_ROUTES
from worker.models import Priority
from worker.stats import QueueDepth, ServiceStats

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "docker"


def exposed_names(tiny_model: Path) -> set[str]:
    from worker import metrics
    from worker.engine import load_reranker

    api = ApiMetrics(SYNC_ROUTES)
    api.requests.labels("GET", "/healthz", "200").inc()
    api.sync_seconds.labels("/v2/rerank").observe(0.1)
    stats = ServiceStats(
        {"completed": 1}, 2, 2, 0, [QueueDepth("rerank", "", p, 0) for p in Priority], None, 0
    )
    metrics.register(load_reranker(str(tiny_model), device="cpu"))
    text = api.render(stats).decode() + generate_latest(REGISTRY).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples} | {
        family.name for family in text_string_to_metric_families(text)
    }


def test_compose_runs_the_monitoring_services_under_their_profile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("flower", "prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
    assert services["worker-cpu"]["environment"]["RERANK_METRICS_PORT"] == "9101"
    mounted = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in re.findall(r"\./(docker/[^:]+):", mounted):
        assert (ROOT / path).exists(), path


def test_prometheus_scrapes_the_api_and_the_workers_metrics_ports() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["rerankq-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["rerankq-worker"]["dns_sd_configs"][0]["port"] == 9101


def test_the_dashboard_plots_only_metrics_rerankq_exposes(tiny_model: Path) -> None:
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "rerankq.json").read_text())
    plotted = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"rerankq_[a-z_]+", target["expr"])
    }
    missing = plotted - exposed_names(tiny_model)
    assert plotted and not missing, missing
