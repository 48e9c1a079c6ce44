"""The rerank routes other services' clients call (Cohere v2, Cohere v1/Jina, TEI), driven by
the real clients over real HTTP against a real worker: their order and scores are the job API's."""

import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cohere
import httpx
import pytest
from langchain_cohere import CohereRerank as LangchainCohereRerank
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank as LlamaCohereRerank

from tests.integration.conftest import NOBODY_LISTENS, WorkerProcess, authed, bearer, make_app, new_key
from tests.integration.helpers import free_port, serve, wait_for

QUERY = "how do I drop rows with missing values in a pandas dataframe?"
DOCUMENTS = [
    "Use df.dropna() to drop rows that contain NaN values.",
    "The giant panda is a bear native to south central China.",
    "<p>DataFrame.fillna replaces <b>missing</b> values with a constant.</p>",
    "pandas.read_csv reads a comma-separated file into a DataFrame. " * 40,  # several windows
    "Rows can be filtered with boolean indexing: df[df['a'].notna()].",
    "Celery is a distributed task queue.",
    "dropna(how='all') drops only rows whose every value is missing.",
]
MODEL = "rerank-v3.5"  # what clients send; the workers' own model scores


@pytest.fixture
def api_url(db_url: str, worker: WorkerProcess) -> Iterator[str]:
    with serve(make_app(db_url, worker.queue, worker.model)) as url:
        yield url


@pytest.fixture
def key(db_url: str) -> str:
    """A tenant's key, as a Cohere client is given one (`api_key`, sent as a bearer token)."""
    return new_key(db_url, tenant="compat", admin=False)


def job_ranking(
    url: str, key: str, query: str = QUERY, documents: list[str] = DOCUMENTS
) -> list[tuple[int, float]]:
    """(document index, sigmoid score) best first, through the job API with the same pairs."""
    body = {
        "queries": [
            {
                "id": "q",
                "text": query,
                "documents": [{"id": str(i), "text": t} for i, t in enumerate(documents)],
            }
        ]
    }
    with httpx.Client(base_url=url, timeout=30, headers=bearer(key)) as http:
        job_id = http.post("/v1/jobs", json=body).json()["id"]
        assert wait_for(http, job_id)["status"] == "completed"
        rows = http.get(f"/v1/jobs/{job_id}/results").json()["results"]
    return [(int(row["document_id"]), row["score"]) for row in rows]


def assert_same(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [index for index, _ in got] == [index for index, _ in expected]
    for (_, score), (_, want) in zip(got, expected, strict=True):
        assert score == pytest.approx(want, abs=1e-5)


def test_cohere_v2_client_ranks_as_the_job_api(api_url: str, key: str) -> None:
    expected = job_ranking(api_url, key)
    client = cohere.ClientV2(base_url=api_url, api_key=key)
    response = client.rerank(model=MODEL, query=QUERY, documents=DOCUMENTS, top_n=4)
    assert_same([(r.index, r.relevance_score) for r in response.results], expected[:4])
    with httpx.Client(base_url=api_url, headers=bearer(key)) as http:
        job = http.get(f"/v1/jobs/{response.id}").json()
        listed = {j["id"]: j for j in http.get("/v1/jobs").json()["jobs"]}
    assert job["synchronous"] is True and job["priority"] == "high" and job["status"] == "completed"
    assert listed[response.id]["synchronous"] is True
    assert response.meta is not None and response.meta.billed_units is not None
    assert response.meta.billed_units.search_units == 1


def test_cohere_v1_client_returns_documents(api_url: str, key: str) -> None:
    expected = job_ranking(api_url, key)
    client = cohere.Client(base_url=api_url, api_key=key)
    response = client.rerank(query=QUERY, documents=DOCUMENTS, return_documents=True)
    assert_same([(r.index, r.relevance_score) for r in response.results], expected)
    assert [r.document.text for r in response.results if r.document] == [DOCUMENTS[i] for i, _ in expected]


def test_v1_takes_text_objects_as_jina_sends_them(api_url: str, key: str) -> None:
    expected = job_ranking(api_url, key)
    body = {"model": "jina-reranker-v2", "query": QUERY, "documents": [{"text": t} for t in DOCUMENTS]}
    response = httpx.post(f"{api_url}/v1/rerank", json={**body, "top_n": 2}, headers=bearer(key), timeout=60)
    assert response.status_code == 200
    assert_same([(r["index"], r["relevance_score"]) for r in response.json()["results"]], expected[:2])
    assert "document" not in response.json()["results"][0]


def test_langchain_cohere_rerank_compresses_in_the_job_api_order(api_url: str, key: str) -> None:
    expected = job_ranking(api_url, key)
    reranker = LangchainCohereRerank(base_url=api_url, cohere_api_key=key, model=MODEL, top_n=3)
    documents = [Document(page_content=text, metadata={"n": i}) for i, text in enumerate(DOCUMENTS)]
    kept = reranker.compress_documents(documents, QUERY)
    got = [(d.metadata["n"], d.metadata["relevance_score"]) for d in kept]
    assert_same(got, expected[:3])


def test_llama_index_cohere_rerank_postprocesses_in_the_job_api_order(api_url: str, key: str) -> None:
    nodes = [
        NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0) for i, text in enumerate(DOCUMENTS)
    ]
    # LlamaIndex sends each node's content as it embeds it: score the same texts through the job API
    texts = [n.node.get_content(metadata_mode="embed") for n in nodes]  # type: ignore[arg-type]
    expected = job_ranking(api_url, key, documents=texts)
    reranker = LlamaCohereRerank(top_n=3, model=MODEL, api_key=key, base_url=api_url)
    kept = reranker.postprocess_nodes(nodes, query_str=QUERY)
    assert_same([(int(n.node.node_id), n.score or 0.0) for n in kept], expected[:3])


def test_tei_rerank_raw_scores_and_text(api_url: str, key: str) -> None:
    expected = job_ranking(api_url, key)
    body = {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "return_text": True}
    response = httpx.post(f"{api_url}/rerank", json=body, headers=bearer(key), timeout=60)
    assert response.status_code == 200
    rows = response.json()
    assert [row["index"] for row in rows] == [index for index, _ in expected]
    for row, (_, score) in zip(rows, expected, strict=True):
        assert 1 / (1 + math.exp(-row["score"])) == pytest.approx(score, abs=1e-5)
        assert row["text"] == DOCUMENTS[row["index"]]
    sigmoid = httpx.post(
        f"{api_url}/rerank", json={"query": QUERY, "texts": DOCUMENTS}, headers=bearer(key), timeout=60
    ).json()
    assert_same([(row["index"], row["score"]) for row in sigmoid], expected)
    assert "text" not in sigmoid[0]


def _newest_job_windows(url: str, key: str) -> dict[int, int]:
    """Windows read per document index by the newest job (the last request's)."""
    with httpx.Client(base_url=url, headers=bearer(key)) as http:
        job_id = http.get("/v1/jobs", params={"limit": 1}).json()["jobs"][0]["id"]
        rows = http.get(f"/v1/jobs/{job_id}/results").json()["results"]
    return {int(row["document_id"]): row["chunks"] for row in rows}


def test_tei_truncate_reads_only_the_first_window(api_url: str, key: str) -> None:
    long_index = 3
    body = {"query": QUERY, "texts": DOCUMENTS, "truncate": True}
    assert len(httpx.post(f"{api_url}/rerank", json=body, headers=bearer(key), timeout=60).json()) == len(
        DOCUMENTS
    )
    assert _newest_job_windows(api_url, key)[long_index] == 1
    assert (
        len(
            httpx.post(
                f"{api_url}/rerank", json={**body, "truncate": False}, headers=bearer(key), timeout=60
            ).json()
        )
        == 7
    )
    assert _newest_job_windows(api_url, key)[long_index] > 1


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v2/rerank", {"model": MODEL, "query": " ", "documents": ["a"]}, "query"),
        ("/v2/rerank", {"model": MODEL, "query": "q", "documents": []}, "documents"),
        ("/v2/rerank", {"model": MODEL, "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, "documents.0"),
        ("/v2/rerank", {"model": MODEL, "query": "q", "documents": ["d"] * 1001}, "documents"),
    ],
)
def test_cohere_routes_refuse_bad_input_naming_the_field(
    api_url: str, key: str, path: str, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{api_url}{path}", json=body, headers=bearer(key), timeout=30)
    assert response.status_code == 422
    error = response.json()
    assert error["field"].startswith(field) and error["message"].startswith(field)
    if len(body["documents"]) > 1000:
        assert "POST /v1/jobs" in error["message"] and "1000" in error["message"]


def test_cohere_client_surfaces_the_message(api_url: str, key: str) -> None:
    client = cohere.ClientV2(base_url=api_url, api_key=key)
    with pytest.raises(cohere.core.ApiError) as raised:
        client.rerank(model=MODEL, query="q", documents=["d"] * 1001)
    assert raised.value.status_code == 422
    assert "RERANK_SYNC_MAX_DOCUMENTS" in str(raised.value.body)


def test_tei_route_refuses_bad_input_in_rerankqs_shape(api_url: str, key: str) -> None:
    response = httpx.post(
        f"{api_url}/rerank", json={"query": "q", "texts": ["a"], "raw_scores": "maybe"}, headers=bearer(key)
    )
    assert response.status_code == 422
    assert response.json()["field"] == "raw_scores" and "error" in response.json()


def test_a_request_past_the_timeout_is_a_504_naming_its_job(db_url: str, key: str) -> None:
    """Nothing consumes this queue: the job waits, and the 504 says where to find it later."""
    with serve(make_app(db_url, NOBODY_LISTENS, "tiny", sync_timeout=0.3)) as url:
        body = {"model": MODEL, "query": QUERY, "documents": DOCUMENTS}
        response = httpx.post(f"{url}/v2/rerank", json=body, headers=bearer(key), timeout=30)
        assert response.status_code == 504
        job_id = response.json()["job_id"]
        assert job_id in response.json()["message"]
        job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=bearer(key)).json()
    assert job["status"] == "queued" and job["synchronous"] is True


def _new_synchronous_job(url: str, known: set[str], key: dict[str, str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{url}/v1/jobs", params={"limit": 1000}, headers=key).json()["jobs"]
        if fresh := [job["id"] for job in jobs if job["synchronous"] and job["id"] not in known]:
            return str(fresh[0])
        time.sleep(0.05)
    raise TimeoutError("the synchronous request's job was not stored")


@pytest.mark.parametrize(("route", "message"), [("/v2/rerank", "message"), ("/rerank", "error")])
def test_a_request_whose_job_is_cancelled_is_a_409_naming_it(db_url: str, route: str, message: str) -> None:
    """Nothing consumes this queue: the request waits until someone cancels its job, and answers
    in its client's error shape instead of a 500."""
    body = {"query": QUERY, "documents": DOCUMENTS, "texts": DOCUMENTS}
    key = bearer(new_key(db_url))
    with serve(make_app(db_url, NOBODY_LISTENS, "tiny")) as url:
        listed = httpx.get(f"{url}/v1/jobs", params={"limit": 1000}, headers=key).json()["jobs"]
        known = {job["id"] for job in listed}
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(httpx.post, f"{url}{route}", json=body, headers=key, timeout=60)
            job_id = _new_synchronous_job(url, known, key)
            assert httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=key).json()["status"] == "cancelled"
            response = waiting.result()
    assert response.status_code == 409
    answer = response.json()
    assert answer["job_id"] == job_id and answer["field"] == "job"
    assert f"job {job_id} was cancelled" in answer[message]


def test_limits_are_the_apps_own_settings(db_url: str) -> None:
    """Checked before anything is stored: the document count and length against this app's limits."""
    app = make_app(db_url, NOBODY_LISTENS, "tiny", sync_max_documents=3, max_document_chars=50)
    with authed(app) as client:
        jobs_before = len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        many = client.post("/v2/rerank", json={"query": "q", "documents": ["a", "b", "c", "d"]})
        long = client.post("/rerank", json={"query": "q", "texts": ["short", "x" * 51]})
        assert len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == jobs_before
    assert many.status_code == 422 and many.json()["field"] == "documents"
    assert "at most 3 (RERANK_SYNC_MAX_DOCUMENTS)" in many.json()["message"]
    assert long.status_code == 422 and long.json()["field"] == "texts.1"
    assert "RERANK_MAX_DOCUMENT_CHARS" in long.json()["error"]


def test_an_unreachable_broker_is_a_503_and_stores_nothing(db_url: str) -> None:
    app = make_app(db_url, NOBODY_LISTENS, "tiny", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    with authed(app) as client:
        jobs_before = len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"])
        response = client.post("/v2/rerank", json={"query": "q", "documents": ["a"]})
        assert len(client.get("/v1/jobs", params={"limit": 1000}).json()["jobs"]) == jobs_before
    assert response.status_code == 503 and "unreachable" in response.json()["message"]
