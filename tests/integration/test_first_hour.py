"""A newcomer's first hour: each mistake the README makes easy is answered in one line (CLI: a
non-zero exit, one line on stderr, no traceback; API: a JSON error), before any work is done."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import POSTGRES_URL, REDIS_URL, free_port
from tests.integration.helpers import EXAMPLES, rerankq


def one_line(done: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """The command exited with `code` and said one line (containing `phrases`) on stderr."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def offline_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A fresh clone's environment: no database URL (the embedded SQLite), no broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RERANK_")}
    env["HF_HUB_OFFLINE"] = "1"
    return {**env, **{f"RERANK_{key.upper()}": value for key, value in settings.items()}}


def test_run_with_a_model_path_that_does_not_exist(tmp_path: Path) -> None:
    env = offline_env(tmp_path, model="/path/that/does/not/exist")
    done = rerankq("run", str(EXAMPLES / "pandas_en.jsonl"), env=env, cwd=tmp_path)
    one_line(done, 2, "no such directory, and not a hub id")


def test_run_with_the_default_model_and_no_hub_says_how_to_point_at_a_directory(tmp_path: Path) -> None:
    env = offline_env(tmp_path)  # RERANK_MODEL unset: the hub id BAAI/bge-reranker-v2-m3
    env.pop("HF_HUB_OFFLINE")
    env["HF_ENDPOINT"] = "http://127.0.0.1:1"  # a hub that cannot be reached, as offline
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-cache")
    done = rerankq("run", str(EXAMPLES / "pandas_en.jsonl"), "-o", "out.csv", env=env, cwd=tmp_path)
    one_line(done, 2, "BAAI/bge-reranker-v2-m3", "unreachable", "RERANK_MODEL", "build-test-model")


@pytest.mark.parametrize(("device", "phrase"), [("tpu", "RERANK_DEVICE"), ("cuda", "CUDA is not available")])
def test_run_on_a_missing_device(device: str, phrase: str, tiny_model: Path, tmp_path: Path) -> None:
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = offline_env(tmp_path, model=str(tiny_model), device=device)
    one_line(rerankq("run", str(EXAMPLES / "pandas_en.jsonl"), env=env, cwd=tmp_path), 2, phrase)


@pytest.mark.parametrize(
    ("output", "phrase"),
    [("/no/such/dir/out.csv", "no such directory"), ("out.txt", "'.txt' unknown"), ("out", "'none' unknown")],
)
def test_run_checks_the_output_before_any_work(output: str, phrase: str, tmp_path: Path) -> None:
    env = offline_env(tmp_path, model="/not/loaded/because/the/output/is/checked/first")
    done = rerankq("run", str(EXAMPLES / "pandas_en.jsonl"), "-o", output, env=env, cwd=tmp_path)
    one_line(done, 2, f"-o {output}", phrase)


def test_run_output_extensions_in_any_case_and_stdout(tiny_model: Path, tmp_path: Path) -> None:
    env = offline_env(tmp_path, model=str(tiny_model))
    job = str(EXAMPLES / "pandas_en.jsonl")
    upper = rerankq("run", job, "-o", "out.CSV", env=env, cwd=tmp_path)
    assert upper.returncode == 0, upper.stderr
    assert (tmp_path / "out.CSV").read_text().startswith("query_id,document_id,rank")
    to_stdout = rerankq("run", job, "-o", "-", env=env, cwd=tmp_path)
    assert to_stdout.returncode == 0, to_stdout.stderr
    rows = [json.loads(line) for line in to_stdout.stdout.splitlines() if line.startswith("{")]
    submitted = [json.loads(line) for line in (EXAMPLES / "pandas_en.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(q["documents"]) for q in submitted) and not (tmp_path / "-").exists()
    assert "job deleted" in to_stdout.stderr  # run cleans up after itself


def test_worker_refuses_a_database_without_the_schema(tiny_model: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/never-migrated.db"
    env = {**offline_env(tmp_path, model=str(tiny_model), database_url=url), "RERANK_BROKER_URL": REDIS_URL}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "--device", "cpu"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    one_line(done, 2, "schema not migrated: run `rerankq migrate`", url)


def test_worker_refuses_an_unknown_device(tmp_path: Path) -> None:
    done = rerankq("worker", "--device", "gpu0", env=offline_env(tmp_path), cwd=tmp_path)
    one_line(done, 2, "--device", "gpu means cuda")


def test_postgres_urls_as_people_copy_them(tmp_path: Path) -> None:
    plain = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    done = rerankq("migrate", env=offline_env(tmp_path, database_url=plain), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    short = plain.replace("postgresql://", "postgres://").rsplit("/", 1)[0] + "/no_such_database_17"
    missing = rerankq("migrate", env=offline_env(tmp_path, database_url=short), cwd=tmp_path)
    one_line(missing, 2, "cannot use the database at postgresql+psycopg://", "no_such_database_17")
    unreachable = offline_env(tmp_path, database_url="postgresql://u:secret@127.0.0.1:1/x")
    line = one_line(rerankq("migrate", env=unreachable, cwd=tmp_path), 2, "cannot use the database")
    assert "secret" not in line


def test_api_before_migrate_says_so_in_json(tmp_path: Path) -> None:
    from api.app import create_app
    from worker.config import Settings

    settings = Settings(database_url=f"sqlite:///{tmp_path}/fresh.db", broker_url=REDIS_URL)
    with TestClient(create_app(settings)) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        assert health.json()["database"].startswith("schema not migrated: run `rerankq migrate`")
        for response in (client.get("/v1/jobs"), client.get("/v1/jobs/x"), client.get("/v1/collections/x")):
            assert response.status_code == 503
            assert response.json()["error"].startswith("schema not migrated: run `rerankq migrate`")


def test_cli_says_a_non_json_error_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = {**offline_env(tmp_path), "RERANK_API_URL": f"http://127.0.0.1:{port}"}
        for _ in range(100):
            done = rerankq("status", "some-job", env=env)
            if "cannot reach" not in done.stderr:
                break
        one_line(done, 1, "error 404")
    finally:
        server.terminate()
        server.wait(10)


def test_submit_wait_exits_4_when_the_job_is_cancelled(
    api_server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = api_server
    big = tmp_path / "big.jsonl"
    documents = [{"id": f"d{i}", "text": f"passage {i} " * 40} for i in range(400)]
    big.write_text(json.dumps({"id": "q", "text": "a question", "documents": documents}) + "\n")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "submit", str(big), "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout is not None
    job_id = waiting.stdout.readline().strip()
    key = {"Authorization": f"Bearer {env['RERANK_API_KEY']}"}
    assert httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=key).status_code == 200
    _, stderr = waiting.communicate(timeout=120)
    assert waiting.returncode == 4, stderr
    assert f"job {job_id} cancelled" in stderr


def test_job_outcomes_map_to_exit_codes() -> None:
    import typer

    from worker.cli_support import outcome

    outcome({"id": "j", "status": "completed", "error": None})
    for status, code in (("failed", 3), ("cancelled", 4)):
        with pytest.raises(typer.Exit) as exited:
            outcome({"id": "j", "status": status, "error": "every batch failed; the first: x"})
        assert exited.value.exit_code == code


def test_the_readme_quick_start_runs_as_written_offline(tiny_model: Path, tmp_path: Path) -> None:
    """The README's second command, pasted into a fresh clone where `make run` built the demo model
    (.models/tiny) and the virtualenv (.venv/bin/rerankq): no hub, no servers."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (command,) = [line for line in readme.splitlines() if line.startswith("RERANK_MODEL=.models/tiny ")]
    (tmp_path / ".models").mkdir()
    (tmp_path / ".models" / "tiny").symlink_to(tiny_model)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    launcher = tmp_path / ".venv" / "bin" / "rerankq"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m worker.cli "$@"\n')
    launcher.chmod(0o755)
    (tmp_path / "examples").symlink_to(EXAMPLES)
    env = {**offline_env(tmp_path), "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    header, *rows = (tmp_path / "out.csv").read_text().splitlines()
    assert header.startswith("query_id,document_id,rank") and rows
