"""A worker whose model cannot be loaded stops at once with one line (no traceback) that names the
path or hub id and says what to set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def start_worker(model: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RERANK_MODEL": model,
        "RERANK_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("/models/not-there", "model directory /models/not-there does not exist; set RERANK_MODEL"),
        ("no-such-org/no-such-reranker", "cannot load model 'no-such-org/no-such-reranker' ("),
    ],
)
def test_missing_model_is_one_line(model: str, says: str, tmp_path: Path) -> None:
    run = start_worker(model, tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rerankq: {says}"), run.stderr
    assert "Traceback" not in run.stderr
