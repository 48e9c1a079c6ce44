"""The commands' client of the rerankq API: its URL and key options, one request whose refusal is
one plain line, a job followed to its end, a file streamed up a block at a time."""

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from tqdm import tqdm

from worker.cli_support import REFUSED, fail

ApiUrl = Annotated[str, typer.Option(envvar="RERANK_API_URL", help="Base URL of the rerankq API.")]
DEFAULT_API = "http://127.0.0.1:8000"
ApiKey = Annotated[
    str | None,
    typer.Option(envvar="RERANK_API_KEY", help="API key (`rerankq keys create`).", show_default=False),
]
NDJSON = {"content-type": "application/x-ndjson"}


def unreachable(url: str, error: httpx.TransportError) -> NoReturn:
    fail(f"cannot reach the API at {url} ({error}); is `rerankq api` running? (--api-url)")


def refused(response: httpx.Response) -> NoReturn:
    """The API's error in one line: its JSON `error`, or the first line of any other body."""
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text.strip() or response.reason_phrase
    fail(f"error {response.status_code}: {message}", code=REFUSED)


def auth(api_key: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Request headers with the API key as a bearer token, if one is given."""
    return {**(headers or {}), **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


def request(method: str, url: str, api_key: str | None, **kwargs: Any) -> dict[str, Any]:
    kwargs["headers"] = auth(api_key, kwargs.get("headers"))
    try:
        response = httpx.request(method, url, timeout=60, **kwargs)
    except httpx.TransportError as error:
        unreachable(url, error)
    if response.status_code >= 400:
        refused(response)
    if not response.content:
        return {}
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        fail(f"{url} answered {response.status_code} with a body that is not JSON; is it rerankq's API?")
    return body


def follow(api_url: str, job_id: str, api_key: str | None) -> dict[str, Any]:
    """Follow a job, with a progress bar, until it finishes: a long poll of a second at a time (the
    bar moves each second, the end shows at once); rate and ETA are the API's (the last minute's
    pace), not tqdm's own guess from the polls."""
    job = request("GET", f"{api_url}/v1/jobs/{job_id}", api_key)
    bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} {unit}s [{elapsed}{postfix}]"  # no tqdm rate/ETA
    with tqdm(total=job["progress"]["total"], unit="pair", desc=job_id[:8], bar_format=bar_format) as bar:
        while True:
            progress = job["progress"]
            bar.update(progress["done"] + progress["failed"] - bar.n)
            if progress["pairs_per_second"] is not None:
                rate, eta = progress["pairs_per_second"], progress["eta_seconds"]
                bar.set_postfix_str(f"{job['status']}, {rate:.1f} pairs/s, ETA {eta:.0f}s")
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            # answered at once when it ends
            job = request("GET", f"{api_url}/v1/jobs/{job_id}", api_key, params={"wait": 1})


def blocks(path: Path, size: int = 1 << 16) -> Iterator[bytes]:
    """A file read a block at a time, for a streamed upload, with a progress bar of bytes sent."""
    with (
        path.open("rb") as file,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name) as bar,
    ):
        while block := file.read(size):
            bar.update(len(block))
            yield block
