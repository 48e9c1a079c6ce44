"""Every bad input a 4xx in the documented shape, on SQLite and PostgreSQL with a real worker: NUL
and lone surrogates wherever text reaches the database, forged cursors, malformed or deep JSON,
the framework's own errors, cross-site forms. Each case also checks that what was accepted before
it is still there, unchanged, and that the bad request created nothing."""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import WorkerProcess, bearer, make_app, make_client, new_key
from tests.integration.helpers import job_body, serve, wait_for
from worker.cursors import BIGINT_MAX, Cursors
from worker.db import get_engine

NDJSON = {"content-type": "application/x-ndjson"}
SECRET = "test-cursor-secret"


@pytest.fixture
def api(db_url: str, worker: WorkerProcess, tiny_model: Path) -> Iterator[TestClient]:
    """The API with a known cursor key and a small JSON depth limit."""
    with make_client(
        db_url, worker.queue, str(tiny_model), cursor_secret=SECRET, max_json_depth=16
    ) as test_client:
        yield test_client


def _state(client: TestClient) -> dict[str, Any]:
    """Every job (id, status, pairs) and collection (id, documents) the API lists."""
    jobs = client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]
    collections = client.get("/v1/collections", params={"limit": 1000}).json()["collections"]
    return {
        "jobs": {j["id"]: j["progress"]["total"] for j in jobs},
        "collections": {c["id"]: c["documents"] for c in collections},
    }


@pytest.fixture
def accepted(api: TestClient) -> Iterator[dict[str, Any]]:
    """A finished job and a collection accepted before the bad input; afterwards, the state the
    API lists is the same (nothing lost, nothing half-made)."""
    job = api.post("/v1/jobs", json=job_body(queries=2, documents=3)).json()
    lines = "\n".join(json.dumps({"id": f"kb-{i}", "text": f"article {i}"}) for i in range(4))
    kb = api.post("/v1/collections", content=lines.encode(), headers=NDJSON).json()
    done = wait_for(api, job["id"])
    assert done["status"] == "completed", done
    before = _state(api)
    yield {"job": done, "collection": kb}
    assert _state(api) == before
    assert api.get(f"/v1/jobs/{job['id']}/results").json()["results"]
    assert api.get(f"/v1/collections/{kb['id']}").json()["documents"] == 4


def _refused(response: Any, status: int, field: str | None) -> dict[str, Any]:
    """The documented error shape: {error, field, details}."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) >= {"error", "field", "details"} and body["field"] == field, body
    return body


def _post_json(client: TestClient, url: str, body: Any) -> Any:
    """POST `body` as JSON with every non-ASCII character escaped, as a client may send a lone
    surrogate (\\ud800) that no UTF-8 encoder would."""
    return client.post(url, content=json.dumps(body), headers={"content-type": "application/json"})


def _job_with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = job_body(queries=1, documents=2)
    target: Any = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("queries", 0, "text"), "what\x00 now", "queries.0.text"),
        (("queries", 0, "id"), "q\x00", "queries.0.id"),
        (("queries", 0, "documents", 1, "text"), "a\x00b", "queries.0.documents.1.text"),
        (("queries", 0, "documents", 1, "id"), "\x00", "queries.0.documents.1.id"),
        (
            ("queries", 0, "documents", 0, "metadata"),
            {"tag": ["ok", "b\x00d"]},
            "queries.0.documents.0.metadata",
        ),
        (("queries", 0, "documents", 0, "metadata"), {"k\x00": 1}, "queries.0.documents.0.metadata"),
        (("queries", 0, "text"), "lone \ud800 surrogate", "queries.0.text"),
        (("options", "callback_url"), "http://hook.example/\x00", "options.callback_url"),
    ],
)
def test_unstorable_text_in_a_json_job_is_a_422_naming_the_field(
    api: TestClient, accepted: dict[str, Any], path: tuple[str | int, ...], value: Any, field: str
) -> None:
    _refused(_post_json(api, "/v1/jobs", _job_with(path, value)), 422, field)


def test_unstorable_text_in_a_collection_job_is_a_422(api: TestClient, accepted: dict[str, Any]) -> None:
    kb = accepted["collection"]["id"]
    body = {"collection": kb, "queries": [{"id": "q", "text": "x", "document_ids": ["kb-1", "kb\x00"]}]}
    _refused(api.post("/v1/jobs", json=body), 422, "queries.0.document_ids.1")
    _refused(
        api.post("/v1/jobs", json={"collection": "c\x00", "queries": [{"id": "q", "text": "x"}]}),
        422,
        "collection",
    )


def test_a_nul_in_a_jsonl_job_line_is_a_422_naming_the_line(
    api: TestClient, accepted: dict[str, Any]
) -> None:
    good = json.dumps({"id": "q1", "text": "x", "documents": [{"id": "d", "text": "y"}]})
    bad = json.dumps({"id": "q2", "text": "x", "documents": [{"id": "d", "text": "y\x00"}]})
    refused = _refused(
        api.post("/v1/jobs", content=f"{good}\n{bad}\n".encode(), headers=NDJSON), 422, "documents.0.text"
    )
    assert refused["error"].startswith("line 2:")
    raw_nul = good.encode().replace(b'"y"', b'"y\x00"')  # a NUL byte, not an escape: not JSON at all
    assert api.post("/v1/jobs", content=raw_nul, headers=NDJSON).status_code == 422


def test_one_nul_line_in_a_collection_upload_is_reported_and_the_good_lines_kept(
    api: TestClient, accepted: dict[str, Any]
) -> None:
    lines = [json.dumps({"id": f"n-{i}", "text": f"note {i}"}) for i in range(6)]
    lines[2] = json.dumps({"id": "n-2", "text": "broken\x00note"})
    lines[4] = '{"id": "n-4", "text": "t", "metadata": {"k": ' + "[" * 20 + "]" * 20 + "}}"  # over 16 deep
    response = api.post("/v1/collections", content="\n".join(lines).encode(), headers=NDJSON)
    assert response.status_code == 201, response.text
    kb = response.json()
    assert kb["documents"] == 4 and kb["error_count"] == 2
    assert [(e["line"], e["field"]) for e in kb["errors"]] == [(3, "text"), (5, None)]
    assert "RERANK_MAX_JSON_DEPTH" in kb["errors"][1]["error"]
    ids = [d["id"] for d in api.get(f"/v1/collections/{kb['id']}/documents").json()["documents"]]
    assert ids == ["n-0", "n-1", "n-3", "n-5"]
    api.delete(f"/v1/collections/{kb['id']}")  # not part of what the fixture compares


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/jobs/ab%00cd", "job_id"),
        ("/v1/jobs/ab%00cd/results", "job_id"),
        ("/v1/jobs/ab%00cd/results.csv", "job_id"),
        ("/v1/collections/ab%00cd", "collection_id"),
        ("/v1/collections/ab%00cd/documents", "collection_id"),
        ("/v1/collections/{kb}/documents?cursor=%00", "cursor"),
        ("/v1/jobs/{job}/results?query_id=q%000", "query_id"),
        ("/v1/jobs/{job}/results.jsonl?query_id=%00", "query_id"),
        ("/v1/jobs/{job}/results?cursor=%00", "cursor"),
        ("/jobs/{job}?query_id=%00", "query_id"),
    ],
)
def test_a_nul_in_a_path_or_query_parameter_is_a_422_naming_it(
    api: TestClient, accepted: dict[str, Any], url: str, field: str
) -> None:
    url = url.format(job=accepted["job"]["id"], kb=accepted["collection"]["id"])
    _refused(api.get(url), 422, field)


def test_a_nul_in_a_collection_name_creates_nothing(api: TestClient, accepted: dict[str, Any]) -> None:
    line = json.dumps({"id": "a", "text": "b"}).encode()
    _refused(
        api.post("/v1/collections", params={"name": "kb\x00"}, content=line, headers=NDJSON), 422, "name"
    )
    _refused(
        api.post(
            "/v1/jobs",
            params={"options": '{"callback_url": "http://x/\\u0000"}'},
            content=line,
            headers=NDJSON,
        ),
        422,
        "options.callback_url",
    )


def test_the_rerank_routes_refuse_unstorable_text_in_their_clients_shapes(
    api: TestClient, accepted: dict[str, Any]
) -> None:
    cohere = api.post("/v2/rerank", json={"query": "q", "documents": ["fine", "n\x00ul"]})
    assert cohere.status_code == 422 and cohere.json()["field"] == "documents.1", cohere.text
    v1 = _post_json(api, "/v1/rerank", {"query": "q", "documents": [{"text": "\ud800"}]})
    assert v1.status_code == 422, v1.text
    _refused(api.post("/rerank", json={"query": "q\x00", "texts": ["a"]}), 422, "query")


def test_results_cursors_are_bound_to_their_job(api: TestClient, accepted: dict[str, Any]) -> None:
    job = accepted["job"]["id"]
    first = api.get(f"/v1/jobs/{job}/results", params={"limit": 2}).json()
    cursor = first["next_cursor"]
    assert api.get(f"/v1/jobs/{job}/results", params={"limit": 2, "cursor": cursor}).status_code == 200
    other = api.post("/v1/jobs", json=job_body(queries=2, documents=3)).json()["id"]
    assert wait_for(api, other)["status"] == "completed"
    refused = _refused(api.get(f"/v1/jobs/{other}/results", params={"cursor": cursor}), 422, "cursor")
    assert "not one of job" in refused["error"]
    api.delete(f"/v1/jobs/{other}")


def test_a_cursor_over_64_bits_is_a_422(api: TestClient, accepted: dict[str, Any]) -> None:
    job = accepted["job"]["id"]
    signed = Cursors.from_secret(SECRET).encode(job, (BIGINT_MAX + 1, 1))
    _refused(api.get(f"/v1/jobs/{job}/results", params={"cursor": signed}), 422, "cursor")
    forged = "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTkuMQ"  # base64 of 99999999999999999999999999.1, unsigned
    _refused(api.get(f"/v1/jobs/{job}/results", params={"cursor": forged}), 422, "cursor")


def test_invalid_utf8_and_deep_json_are_422s_in_the_documented_shape(
    api: TestClient, accepted: dict[str, Any]
) -> None:
    body = json.dumps(job_body(queries=1, documents=1)).encode()
    not_utf8 = body.replace(b"question", b"quest\xffion")
    _refused(
        api.post("/v1/jobs", content=not_utf8, headers={"content-type": "application/json"}), 422, "body"
    )
    for depth in (17, 10_000):  # over the limit (16 here), and far over Python's recursion limit
        deep = _job_with(("queries", 0, "documents", 0, "metadata"), {"k": 0})
        text = json.dumps(deep).replace('{"k": 0}', "[" * depth + "]" * depth)
        refused = _refused(
            api.post("/v1/jobs", content=text, headers={"content-type": "application/json"}), 422, "body"
        )
        assert "RERANK_MAX_JSON_DEPTH" in refused["error"]
    text = json.dumps(_job_with(("queries", 0, "documents", 0, "metadata"), {"k": [[[["fine"]]]]}))
    shallow = api.post("/v1/jobs", content=text, headers={"content-type": "application/json"})
    assert shallow.status_code == 202, shallow.text
    api.post(f"/v1/jobs/{shallow.json()['id']}/cancel")
    api.delete(f"/v1/jobs/{shallow.json()['id']}")


def test_the_frameworks_own_errors_use_the_documented_shape(
    api: TestClient, accepted: dict[str, Any]
) -> None:
    assert "GET /v1/nowhere" in _refused(api.get("/v1/nowhere"), 404, None)["error"]
    not_allowed = api.put("/v1/jobs")
    _refused(not_allowed, 405, None)
    assert not_allowed.headers["allow"]  # the methods the path takes
    huge = {"content-type": "application/json", "content-length": str(2**40)}
    _refused(api.post("/v1/jobs", content=b"{}", headers=huge), 413, "body")
    torn = {"content-type": "multipart/form-data; boundary=xyz"}
    _refused(api.post("/v1/collections", content=b"--xyz\r\nnot a part", headers=torn), 400, "body")
    _refused(api.post("/v1/jobs", content=b"", headers={"content-type": "application/json"}), 422, "body")


def test_a_cross_site_form_cannot_create_anything(api: TestClient, accepted: dict[str, Any]) -> None:
    """What a form on another site can send without a preflight: text/plain, urlencoded (and
    multipart, which needs the auth a form cannot carry)."""
    job = json.dumps(job_body(queries=1, documents=1))
    line = json.dumps({"id": "a", "text": "b"})
    for media in ("text/plain", "application/x-www-form-urlencoded"):
        headers = {"content-type": media, "origin": "https://evil.example"}
        _refused(api.post("/v1/jobs", content=job, headers=headers), 422, "body")
        _refused(api.post("/v1/collections", content=line, headers=headers), 415, "body")
    response = api.get("/v1/jobs", headers={"origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_answers_only_the_listed_origins(db_url: str, worker: WorkerProcess, tiny_model: Path) -> None:
    allowed = "https://portal.example"
    with make_client(
        db_url, worker.queue, str(tiny_model), cors_origins=f"{allowed}, https://b.example"
    ) as client:
        assert (
            client.get("/v1/jobs", headers={"origin": allowed}).headers["access-control-allow-origin"]
            == allowed
        )
        other = client.get("/v1/jobs", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        preflight = {"origin": "https://evil.example", "access-control-request-method": "POST"}
        assert client.options("/v1/jobs", headers=preflight).status_code == 400


class SlowUpload:
    """A client uploading a collection a few bytes at a time over a raw socket."""

    def __init__(self, base_url: str, body: bytes, key: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self.body = body
        self.sent = 0
        self.socket = socket.create_connection((host, int(port)))
        head = (
            f"POST /v1/collections HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.socket.sendall(head.encode())

    def send(self, size: int) -> None:
        self.socket.sendall(self.body[self.sent : self.sent + size])
        self.sent += size

    def answer(self) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of the response (the connection is closed after it)."""
        self.socket.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < self._length(data):
            chunk = self.socket.recv(65536)
            if not chunk:
                break
            data += chunk
        self.socket.close()
        head, body = data.split(b"\r\n\r\n", 1)
        return int(head.split()[1]), json.loads(body)

    @staticmethod
    def _length(data: bytes) -> int:
        head = data.split(b"\r\n\r\n", 1)[0].decode().lower()
        return next(
            int(line.split(":")[1]) for line in head.splitlines() if line.startswith("content-length")
        )


def test_slow_uploads_hold_no_database_connection_and_a_stalled_one_gets_408(
    db_url: str, worker: WorkerProcess, tiny_model: Path, accepted: dict[str, Any]
) -> None:
    app = make_app(db_url, worker.queue, str(tiny_model), body_read_timeout=1.5)
    body = "\n".join(json.dumps({"id": f"s-{i}", "text": f"slow {i}"}) for i in range(3)).encode()
    key = new_key(db_url)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30, headers=bearer(key)) as client:
        uploads = [SlowUpload(url, body, key) for _ in range(16)]
        for _ in range(4):  # mid-body: each has sent a few bytes and waits to send more
            for upload in uploads:
                upload.send(3)
            time.sleep(0.3)
            assert get_engine(db_url).pool.checkedout() == 0
            assert client.get(f"/v1/jobs/{accepted['job']['id']}").status_code == 200
        stalled, finishing = uploads[0], uploads[1:]
        for upload in finishing:
            upload.send(len(body))
        answers = [upload.answer() for upload in finishing]
        assert {status for status, _ in answers} == {201} and all(a["documents"] == 3 for _, a in answers)
        status, refused = stalled.answer()  # it sent nothing for body_read_timeout seconds
        assert status == 408 and refused["field"] == "body" and "RERANK_BODY_READ_TIMEOUT" in refused["error"]
        for _, made in answers:  # not part of what the fixture compares
            assert client.delete(f"/v1/collections/{made['id']}").status_code == 204
