"""Fixtures of both tiers, none of which needs a server: tiny random-weight rerankers built once and
the trained MiniLM cross-encoder. The servers' fixtures are tests/integration/conftest.py's."""

import os
from pathlib import Path

import pytest

# A trained BERT cross-encoder (token type ids, 512 positions): shared/models/minilm-l6-rerank beside
# the checkout (or above it), unless RERANK_TEST_TRAINED_MODEL names another.
TRAINED_MODEL = os.environ.get("RERANK_TEST_TRAINED_MODEL") or next(
    (
        str(found)
        for parent in Path(__file__).resolve().parents[1].parents
        if (found := parent / "shared/models/minilm-l6-rerank").is_dir()
    ),
    None,
)


def _random_model(tmp_path_factory: pytest.TempPathFactory, name: str, shape: str) -> Path:
    from worker.engine.random_model import build_random_reranker

    return build_random_reranker(tmp_path_factory.mktemp("models") / name, shape)


def _on_cpu(model: Path):  # type: ignore[no-untyped-def]
    """`model` loaded as the tests score: on the CPU, in fp32 (imported late: torch is slow to load)."""
    from worker.engine import load_reranker

    return load_reranker(str(model), device="cpu", dtype="fp32")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_model(tmp_path_factory, "tiny", "tiny")


@pytest.fixture(scope="session")
def reranker(tiny_model: Path):  # type: ignore[no-untyped-def]
    return _on_cpu(tiny_model)


@pytest.fixture(scope="session")
def tiny_bert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BERT: token type ids and 512 positions, like the MiniLM rerankers."""
    return _random_model(tmp_path_factory, "bert", "bert-tiny")


@pytest.fixture(scope="session")
def bert_reranker(tiny_bert_model: Path):  # type: ignore[no-untyped-def]
    return _on_cpu(tiny_bert_model)


@pytest.fixture(scope="session")
def trained_model() -> Path:
    if TRAINED_MODEL is None:
        pytest.skip("no trained model: set RERANK_TEST_TRAINED_MODEL to minilm-l6-rerank's directory")
    return Path(TRAINED_MODEL)


@pytest.fixture(scope="session")
def trained_reranker(trained_model: Path):  # type: ignore[no-untyped-def]
    return _on_cpu(trained_model)
