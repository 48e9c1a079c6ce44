"""A worker whose model cannot be loaded stops at once with one line (no traceback) that names the
path or hub id and says what to set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]


def start_worker(model: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    database_url = f"sqlite:///{tmp_path / 'migrated.db'}"
    upgrade(database_url)  # past the schema check: the model is what fails
    env = {
        **os.environ,
        "RERANK_MODEL": model,
        "RERANK_DATABASE_URL": database_url,
        "HF_HUB_OFFLINE": "1",
    }
    command = [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("/models/not-there", "RERANK_MODEL='/models/not-there': no such directory, and not a hub id"),
        ("no-such-org/no-such-reranker", "cannot load the model 'no-such-org/no-such-reranker': "),
    ],
)
def test_missing_model_is_one_line(model: str, says: str, tmp_path: Path) -> None:
    run = start_worker(model, tmp_path)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rerankq: {says}"), run.stderr
    assert "Traceback" not in run.stderr
