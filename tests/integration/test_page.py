"""The page in a real browser (Debian's headless Chromium driven by Playwright) against a running
stack: the API served by uvicorn, Redis, PostgreSQL and one real worker with the tiny model.
Each test compares what the page shows with what the JSON API answers for the same job.
Screenshots go to $RERANK_SCREENSHOT_DIR (`docs/` refreshes the README's)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet
import pytest

from tests.integration.conftest import REDIS_URL, WorkerProcess, bearer, new_key, queue_for

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extras)")
Page = sync_api.Page

# Browser tests run once, on PostgreSQL: the page reads through the same service as the API,
# whose SQL both dialects already cover.
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

EXAMPLES = Path(__file__).parents[2] / "examples"
WIDE = {"width": 1100, "height": 900}
PHONE = {"width": 375, "height": 812}
GREEN = "rgb(28, 124, 58)"  # --green: the left border of a relevant card


def _chromium() -> str:
    path = (
        os.environ.get("RERANK_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not path:
        pytest.fail("no Chromium: `apt-get install chromium` (or set RERANK_TEST_CHROMIUM)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> str:
    """The tiny random model; RERANK_TEST_PAGE_MODEL names a trained one (scores worth a screenshot)."""
    return os.environ.get("RERANK_TEST_PAGE_MODEL") or str(tiny_model)


@pytest.fixture(scope="module")
def page_queue(db_url: str) -> str:
    return f"{queue_for(db_url)}-page"


@pytest.fixture(scope="module")
def page_worker(
    db_url: str, model: str, page_queue: str, start_worker: Callable[..., WorkerProcess]
) -> Iterator[WorkerProcess]:
    """The worker of the page's queue; started by the first test that needs results (the first
    test of this module submits before it runs, to watch a job go from queued to done), stopped
    with this module."""
    worker = start_worker(db_url, page_queue, model=model, task_pairs="64")
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def api_url(
    db_url: str, model: str, page_queue: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`rerankq api` on a free port, handing work to the page's queue."""
    port = _free_port()
    env = {
        **os.environ,
        "RERANK_DATABASE_URL": db_url,
        "RERANK_BROKER_URL": REDIS_URL,
        "RERANK_QUEUE": page_queue,
        "RERANK_MODEL": model,
    }
    log = tmp_path_factory.mktemp("api") / "api.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        server.terminate()
        pytest.fail(f"the API did not start:\n{log.read_text()}")
    yield url
    server.terminate()
    server.wait(20)


@pytest.fixture(scope="module")
def browser(api_url: str) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium())
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def key(db_url: str) -> str:
    """The API key a person enters on the page (the stack runs with auth on, its default)."""
    return new_key(db_url, tenant="page")


@pytest.fixture
def api(api_url: str, key: str) -> Iterator[httpx.Client]:
    """The JSON API, with the same key as the page."""
    with httpx.Client(base_url=api_url, headers=bearer(key), timeout=60) as client:
        yield client


def sign_in(tab: Page, key: str) -> None:
    """Enter the key as a person does: a page without one says so and opens the key field."""
    tab.goto("/jobs")
    sync_api.expect(tab.locator("h1")).to_have_text("API key needed")
    tab.fill("#api-key", key)
    tab.press("#api-key", "Enter")
    sync_api.expect(tab.locator("h1")).not_to_have_text("API key needed")


@pytest.fixture
def tab(browser: Any, api_url: str, key: str) -> Iterator[Page]:
    """A fresh browser tab on the API, signed in with the key; the test fails if the page's
    script raises."""
    context = browser.new_context(viewport=WIDE, base_url=api_url)
    errors: list[str] = []
    opened = context.new_page()
    opened.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(opened, key)
    yield opened
    context.close()
    assert errors == [], "the page's script raised"


@pytest.fixture
def page(tab: Page, page_worker: WorkerProcess) -> Page:
    """A tab, with the worker running."""
    return tab


def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    folder = os.environ.get("RERANK_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def api_results(api: httpx.Client, job_id: str, query_id: str) -> list[dict[str, Any]]:
    params = {"query_id": query_id, "limit": 10000}
    response = api.get(f"/v1/jobs/{job_id}/results", params=params)
    response.raise_for_status()
    return list(response.json()["results"])


def submit_pasted(page: Page, query: str, documents: list[str], **options: str) -> str:
    """Fill the form (the keyboard's way: focus, type), submit, and return the job id it opens."""
    page.goto("/")
    page.fill("#query", query)
    page.fill("#documents", "\n\n".join(documents))
    for name, value in options.items():
        page.fill(f"#{name}", value)
    page.click("button.primary")
    page.wait_for_url("**/jobs/*")
    return page.url.rsplit("/", 1)[1]


def submit_file(page: Page, path: Path, **options: str) -> str:
    page.goto("/")
    page.check("input[name=source][value=file]")
    page.set_input_files("#job-file", str(path))
    for name, value in options.items():
        page.fill(f"#{name}", value)
    page.click("button.primary")
    page.wait_for_url("**/jobs/*")
    return page.url.split("/jobs/", 1)[1]


def wait_finished(page: Page) -> None:
    """The progress bar reaches 100 % and the page shows the results (it reloads once done)."""
    sync_api.expect(page.locator(".job-summary .percent")).to_have_text("100 %", timeout=120_000)
    page.wait_for_selector("#results", timeout=30_000)
    assert page.get_attribute(".job-summary [role=progressbar]", "aria-valuenow") == "100"


def band(score: float, threshold: float) -> str:
    if score > threshold:
        return "relevant"
    return "borderline" if score > threshold - 0.1 else "below"


LEAVE = [
    "Annual leave is 15 days a year; unused leave carries over to March.",
    "The cafeteria opens at eight and serves breakfast until ten.",
    "Parental leave: 16 weeks paid, to be taken within the child's first year.",
    "Expense reports are due by the fifth working day of the following month.",
    "Sick leave needs a doctor's note after three consecutive days.",
    "Parking permits are issued by facilities on the second floor.",
]


def leave_job(api: httpx.Client) -> str:
    """Submit LEAVE for "annual leave" through the JSON API."""
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(LEAVE, 1)]
    body = {"queries": [{"id": "q1", "text": "annual leave", "documents": documents}]}
    return str(api.post("/v1/jobs", json=body).json()["id"])


def test_jobs_page_cancels_and_follows_a_job_without_reloading(
    tab: Page, api: httpx.Client, request: pytest.FixtureRequest
) -> None:
    job_id, cancelled = leave_job(api), leave_job(api)
    tab.goto("/jobs")
    row = tab.locator(f".job-row:has(a[href='/jobs/{job_id}'])")
    sync_api.expect(row.locator(".badge")).to_have_text("queued")  # no worker is running yet
    assert row.locator(".percent").inner_text() == "0 %"
    tab.click(f"[data-cancel='{cancelled}']")
    sync_api.expect(tab.locator(f"[data-status-of='{cancelled}']")).to_have_text("cancelled")
    assert api.get(f"/v1/jobs/{cancelled}").json()["status"] == "cancelled"
    assert tab.locator(f"[data-cancel='{cancelled}']").count() == 0
    tab.evaluate("window.sameDocument = true")
    request.getfixturevalue("page_worker")
    sync_api.expect(row.locator(".percent")).to_have_text("100 %", timeout=120_000)
    sync_api.expect(row.locator(".badge")).to_have_text("completed")
    assert row.locator(".pairs").inner_text() == "6 / 6 pairs"
    assert tab.evaluate("window.sameDocument") is True  # updated in place, not reloaded


def test_submit_watch_and_read_cards(page: Page, api: httpx.Client) -> None:
    job_id = submit_pasted(page, "How much annual leave do I get?", LEAVE)
    wait_finished(page)
    expected = api_results(api, job_id, "q1")
    cards = page.locator("li.card")
    assert cards.count() == len(LEAVE)
    shown = [
        (
            card.get_attribute("data-document"),
            card.locator(".rank").inner_text(),
            card.locator(".score").inner_text(),
        )
        for card in cards.all()
    ]
    assert shown == [(r["document_id"], f"#{r['rank']}", f"{r['score']:.4f}") for r in expected]
    raws = page.locator("li.card .raw").all_inner_texts()
    assert raws == [f"raw {r['raw_score']:.4f}" for r in expected]
    threshold = 0.5
    for card, result in zip(cards.all(), expected, strict=True):
        assert card.get_attribute("data-band") == band(result["score"], threshold)
        relevant = card.evaluate("c => getComputedStyle(c).borderLeftColor") == GREEN
        assert relevant == result["relevant"]
    assert page.inner_text("#relevant-count") == str(sum(r["relevant"] for r in expected))
    marks = {text.lower() for text in page.locator("li.card mark").all_inner_texts()}
    assert {"annual", "leave"} <= marks
    page.fill("#page-threshold", "0.85")  # a threshold that shows all three colours, for the README
    screenshot(page, "results", full_page=True)


def test_threshold_slider_and_presets_recount(page: Page, api: httpx.Client) -> None:
    job_id = submit_pasted(page, "parental leave", LEAVE)
    wait_finished(page)
    scores = [r["score"] for r in api_results(api, job_id, "q1")]
    slider = page.locator("#page-threshold")
    slider.focus()
    for key, threshold in (("Home", 0.0), ("End", 1.0)):
        page.keyboard.press(key)
        assert page.inner_text("#relevant-count") == str(sum(s > threshold for s in scores))
    threshold = sorted(scores)[len(scores) // 2]  # a threshold that splits the page
    slider.fill(str(round(threshold, 2)))
    threshold = float(slider.input_value())
    assert page.inner_text("#relevant-count") == str(sum(s > threshold for s in scores))
    bands = page.locator("li.card").evaluate_all("cards => cards.map(c => c.dataset.band)")
    assert bands == [band(s, threshold) for s in scores]
    page.click("button.preset[data-threshold='0.75']")
    assert slider.input_value() == "0.75"
    assert page.inner_text("#relevant-count") == str(sum(s > 0.75 for s in scores))


def test_chinese_job_file_highlights_runs_of_the_query(page: Page, api: httpx.Client) -> None:
    job_id = submit_file(page, EXAMPLES / "hr_faq_zh.jsonl", top_k="3")
    wait_finished(page)
    first = json.loads((EXAMPLES / "hr_faq_zh.jsonl").read_text().splitlines()[0])
    expected = api_results(api, job_id, first["id"])
    assert page.locator("li.card").evaluate_all("cards => cards.map(c => c.dataset.document)") == [
        r["document_id"] for r in expected
    ]
    assert "年假" in page.locator("li.card mark").all_inner_texts()
    screenshot(page, "results-zh")
    second = json.loads((EXAMPLES / "hr_faq_zh.jsonl").read_text().splitlines()[1])
    page.select_option("#query_id", second["id"])
    page.click("text=Show")
    page.wait_for_url(f"**query_id={second['id']}**")
    assert page.inner_text(".query-text") == f"“{second['text']}”"
    shown = page.locator("li.card").evaluate_all("cards => cards.map(c => c.dataset.document)")
    assert shown == [r["document_id"] for r in api_results(api, job_id, second["id"])]


def test_long_document_best_window_and_whole_text(page: Page, api: httpx.Client) -> None:
    job_id = submit_file(page, EXAMPLES / "manual_long.jsonl", max_length="128")
    wait_finished(page)
    first = json.loads((EXAMPLES / "manual_long.jsonl").read_text().splitlines()[0])
    expected = {r["document_id"]: r for r in api_results(api, job_id, first["id"])}
    card = page.locator("li.card", has_text="windows:").first
    result = expected[card.get_attribute("data-document") or ""]
    assert result["chunks"] > 1
    card.locator("summary").focus()
    page.keyboard.press("Enter")  # "show whole document", by keyboard
    window = card.locator("details.whole .window")
    sync_api.expect(window).to_be_visible()
    assert window.inner_text() == result["best_chunk"]["text"]
    document = next(d for d in first["documents"] if d["id"] == result["document_id"])
    assert card.locator("details.whole .passage").inner_text() == document["text"]
    window.scroll_into_view_if_needed()
    screenshot(page, "long-document")


def test_html_in_a_document_is_shown_as_text(page: Page) -> None:
    hostile = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> annual leave'
    submit_pasted(page, "annual leave", [hostile, "annual leave plain"])
    wait_finished(page)
    card = page.locator("li.card", has_text="onerror")  # the scored text, cleaned of HTML, is shorter
    card.locator("summary").click()
    assert card.locator("details.whole .passage").inner_text() == hostile
    assert page.evaluate("window.pwned") is None
    assert page.locator("li.card img, li.card script").count() == 0


def test_errors_show_beside_the_field_the_api_names(page: Page) -> None:
    page.goto("/")
    page.fill("#documents", "a passage")
    page.click("button.primary")
    sync_api.expect(page.locator("#query-error")).to_contain_text("queries.0.text")
    assert page.get_attribute("#query", "aria-invalid") == "true"
    page.fill("#query", "a query")
    page.fill("#top_k", "0")
    page.click("button.primary")
    sync_api.expect(page.locator("#top_k-error")).to_contain_text("options.top_k")
    assert page.inner_text("#query-error") == ""
    assert page.url.endswith("/")  # nothing was submitted


def test_keyboard_only_submission(page: Page) -> None:
    page.goto("/")
    page.focus("#query")
    page.keyboard.type("annual leave")
    page.keyboard.press("Tab")
    page.keyboard.type("Annual leave is 15 days.\nThe cafeteria opens at eight.")
    for _ in range(40):  # on through the options to the submit button
        if page.evaluate("document.activeElement.classList.contains('primary')"):
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/jobs/*")
    wait_finished(page)
    assert page.locator("li.card").count() == 2


def test_paging_through_a_thousand_results(page: Page, api: httpx.Client) -> None:
    documents = [{"id": f"d{i:04d}", "text": f"passage {i} about leave " * (i % 5 + 1)} for i in range(1000)]
    body = {"queries": [{"id": "big", "text": "leave", "documents": documents}]}
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    page.goto(f"/jobs/{job_id}")
    wait_finished(page)
    expected = [r["document_id"] for r in api_results(api, job_id, "big")]
    seen: list[str] = []
    for number in range(1, 21):
        ranks = page.locator("li.card").evaluate_all("cards => cards.map(c => Number(c.dataset.rank))")
        assert ranks == list(range(len(seen) + 1, len(seen) + 51))
        seen += page.locator("li.card").evaluate_all("cards => cards.map(c => c.dataset.document)")
        assert f"page {number}" in page.inner_text(".pager")
        if number < 20:
            page.click("a[rel=next]")
    assert page.locator("a[rel=next]").count() == 0
    assert seen == expected
    with page.expect_download() as download:
        page.click("a:text-is('PARQUET')")
    table = pyarrow.parquet.read_table(download.value.path())
    assert table.column("document_id").to_pylist() == expected
    page.click("text=Raw table")
    rows = page.locator("table.raw tbody tr")
    assert rows.count() == 50
    assert rows.first.locator("td").first.inner_text() == "951"
    screenshot(page, "table")


def test_jobs_list_and_phone_width(
    browser: Any, api_url: str, api: httpx.Client, key: str, page_worker: WorkerProcess
) -> None:
    job_id = leave_job(api)
    context = browser.new_context(viewport=PHONE, base_url=api_url, device_scale_factor=1)
    phone = context.new_page()
    sign_in(phone, key)
    phone.goto(f"/jobs/{job_id}")
    wait_finished(phone)
    for path, name in ((f"/jobs/{job_id}", "phone-results"), ("/", "phone-submit"), ("/jobs", None)):
        phone.goto(path)
        assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], path
        if name:
            phone.evaluate("document.querySelector('.query-text')?.scrollIntoView()")  # the cards
            screenshot(phone, name)
    row = phone.locator(f".job-row:has(a[href='/jobs/{job_id}'])")
    sync_api.expect(row.locator(".badge")).to_have_text("completed")
    sync_api.expect(row.locator(".percent")).to_have_text("100 %")
    context.close()


def test_collection_upload_errors_and_a_job_over_it(page: Page, api_url: str, tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "kb1", "text": "Rotate the API key from the admin console."}),
        "{not json",
        json.dumps({"id": "kb2"}),
        json.dumps({"id": "kb3", "text": "Keys expire after ninety days."}),
    ]
    upload = tmp_path / "kb.jsonl"
    upload.write_text("\n".join(lines) + "\n")
    page.goto("/collections")
    page.fill("#collection-name", "kb")
    page.set_input_files("#collection-file", str(upload))
    page.click("button.primary")
    page.wait_for_url("**/collections/*")
    counts = page.locator(".counts dd").all_inner_texts()
    assert counts[:2] == ["2", "2"]
    assert page.locator("table.raw tbody td.num").all_inner_texts() == ["2", "3"]
    screenshot(page, "collection")
    collection_id = page.url.rsplit("/", 1)[1]
    page.goto("/collections")
    assert page.locator(f"a[href='/collections/{collection_id}']").inner_text() == "kb"
    page.goto("/")
    assert page.locator(f"#known-collections option[value='{collection_id}']").count() == 1  # the picker
    page.goto(f"/collections/{collection_id}")
    page.click("text=Rerank against it")
    page.fill("#query", "rotate the API key")
    page.click("button.primary")
    page.wait_for_url("**/jobs/*")
    wait_finished(page)
    assert sorted(page.locator("li.card").evaluate_all("cs => cs.map(c => c.dataset.document)")) == [
        "kb1",
        "kb3",
    ]
    page.goto("/")
    page.fill("#query", "How much annual leave do I get?")
    page.fill("#documents", "\n".join(LEAVE))
    page.click("button.preset[data-threshold='0.4']")
    screenshot(page, "submit")
    page.goto("/jobs")
    screenshot(page, "jobs")


def test_a_job_with_judgements_charts_whether_reranking_helped(
    page: Page, api_url: str, api: httpx.Client
) -> None:
    documents = [{"id": f"d{i}", "text": text} for i, text in enumerate(LEAVE, 1)]
    qrels = [{"query_id": "q1", "document_id": "d1", "relevance": 2}]
    qrels.append({"query_id": "q1", "document_id": "d3", "relevance": 1})
    body = {"queries": [{"id": "q1", "text": "annual leave", "documents": documents}], "qrels": qrels}
    job_id = api.post("/v1/jobs", json=body).json()["id"]
    page.goto(f"/jobs/{job_id}")
    wait_finished(page)
    measured = api.get(f"/v1/jobs/{job_id}/evaluation").json()

    chart = page.locator("#evaluation svg.eval-chart")
    sync_api.expect(chart).to_be_visible()
    bars = chart.locator("rect.eval-bar")
    assert bars.count() == 6
    for index in range(6):
        bar = bars.nth(index)
        order, field = bar.get_attribute("data-order"), bar.get_attribute("data-measure")
        assert float(bar.get_attribute("data-value") or "nan") == pytest.approx(measured[order][field])
        assert float(bar.get_attribute("width") or "nan") == pytest.approx(
            280 * measured[order][field], abs=0.06
        )
    assert "Recall@100" in (chart.text_content() or "")
    page.click("#evaluation summary")
    row = page.locator("#evaluation tbody tr")
    assert row.count() == 1 and row.locator("td").nth(1).inner_text() == "2"
    screenshot(page, "evaluation")

    plain = leave_job(api)  # no judgements: no chart
    page.goto(f"/jobs/{plain}")
    wait_finished(page)
    assert page.locator("#evaluation").count() == 0
