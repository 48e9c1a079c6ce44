"""Settings are passed in, not read globally: two configurations run side by side in one process;
what an app answers before it touches a database (docs, schema, a body that is not JSON)."""

from pathlib import Path

from fastapi.testclient import TestClient

from api.app import create_app
from worker.config import Settings
from worker.queue import PLAN_TASK
from worker.tasks import Tasks

# Nothing listens here: building an app or a queue must not connect anywhere.
A = Settings(broker_url="redis://127.0.0.1:1/1", queue="queue-a", database_url="sqlite:///a.db", task_pairs=4)
B = Settings(broker_url="redis://127.0.0.1:1/2", queue="queue-b", database_url="sqlite:///b.db", task_pairs=9)


def test_two_settings_give_two_independent_worker_apps() -> None:
    first, second = Tasks(A), Tasks(B)
    assert first.app is not second.app
    assert (first.app.conf.broker_url, first.app.conf.task_default_queue) == (A.broker_url, "queue-a")
    assert (second.app.conf.broker_url, second.app.conf.task_default_queue) == (B.broker_url, "queue-b")
    assert (first.queue.queue, second.queue.queue) == ("queue-a", "queue-b")
    assert (first.limits.task_pairs, second.limits.task_pairs) == (4, 9)
    assert first.app.tasks[PLAN_TASK] is not second.app.tasks[PLAN_TASK]


def test_two_settings_give_two_independent_apis(tmp_path: Path) -> None:
    urls = [f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db")]
    small = Settings(database_url=urls[0], max_request_bytes=2048)
    large = Settings(database_url=urls[1], max_request_bytes=4096)
    apps = create_app(small), create_app(large)
    assert [app.state.settings.database_url for app in apps] == urls
    assert apps[0].state.queue is not apps[1].state.queue
    body = b"x" * 3000  # over the first app's limit only; not JSON, so no database is touched
    headers = {"content-type": "application/json"}
    first, second = (TestClient(app).post("/v1/jobs", content=body, headers=headers) for app in apps)
    assert first.status_code == 413 and "2048" in first.json()["error"]
    assert second.status_code == 422


def test_docs_are_served_offline_and_describe_the_jsonl_body(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'docs.db'}")))
    page = client.get("/docs")
    assert page.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower() and "http" not in page.text.replace("http-equiv", "")
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    submit = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]
    assert set(submit["requestBody"]["content"]) == {"application/json", "application/x-ndjson"}
    assert {p["name"] for p in submit["parameters"]} == {"options", "priority", "Idempotency-Key"}


def test_database_urls_as_people_copy_them() -> None:
    for url in ("postgresql://u:p@h:5432/d", "postgres://u:p@h:5432/d"):
        assert Settings(database_url=url).database_url == "postgresql+psycopg://u:p@h:5432/d"
    assert Settings(database_url="sqlite:///x.db").database_url == "sqlite:///x.db"


def test_jsonl_sent_as_json_says_which_content_type_to_use(tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}")))
    lines = b'{"id": "q1", "text": "a", "documents": []}\n{"id": "q2", "text": "b", "documents": []}\n'
    refused = client.post("/v1/jobs", content=lines, headers={"content-type": "application/json"})
    assert refused.status_code == 422 and refused.json()["field"] == "body"
    assert "content-type: application/x-ndjson" in refused.json()["error"]
