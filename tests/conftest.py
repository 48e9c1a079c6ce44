"""Fixtures of both tiers, none of which needs a server: a tiny random-weight reranker built once.
The servers' fixtures are tests/integration/conftest.py's."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from worker.engine.random_model import build_random_reranker

    return build_random_reranker(tmp_path_factory.mktemp("models") / "tiny", "tiny")


@pytest.fixture(scope="session")
def reranker(tiny_model: Path):  # type: ignore[no-untyped-def]
    from worker.engine import load_reranker

    return load_reranker(str(tiny_model), device="cpu", dtype="fp32")
