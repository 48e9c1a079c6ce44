"""What the API refuses before a route reads a request: a body that stops arriving, a JSON body
that is not UTF-8 or nests too deep. Each refusal is an
error in the documented shape (api.app maps them), never a 500 and never a held connection."""

import asyncio
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.config import Settings
from worker.errors import InvalidInput

# A JSON string, escapes included (written so the regex never backtracks).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(body: bytes) -> int:
    """How deeply `body`'s arrays and objects nest, from its brackets outside strings: found
    before parsing, so a body nested 10,000 deep costs a scan, not a recursion."""
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check_json_body(body: bytes, max_depth: int) -> None:
    """InvalidInput (field `body`) for a JSON body that is not UTF-8 or nests deeper than `max_depth`."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(
            f"body is not UTF-8 (byte {error.start}: {error.reason}); JSON bodies must be UTF-8",
            field="body",
        ) from error
    # Fewer brackets than the limit cannot nest past it: most bodies skip the scan.
    if body.count(b"[") + body.count(b"{") > max_depth and (depth := json_depth(body)) > max_depth:
        raise InvalidInput(
            f"body nests {depth} levels deep; the limit is {max_depth} (RERANK_MAX_JSON_DEPTH)", field="body"
        )


class CheckedRoute(APIRoute):
    """A route whose JSON body is checked (UTF-8, depth) before FastAPI parses it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH") and is_json(request.headers.get("content-type")):
                settings: Settings = request.app.state.settings
                check_json_body(await request.body(), settings.max_json_depth)  # kept for the handler
            return await handler(request)

        return checked


class BodyReadTimeout:
    """Answer 408 when a request body sends nothing for `seconds`: a stalled client costs a
    coroutine until then, and nothing after it (uploads hold no database connection meanwhile)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = False

        async def timed() -> Message:
            nonlocal body_done
            if body_done:  # e.g. a streamed response listening for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"no byte of the request body arrived for {self.seconds:g} s (RERANK_BODY_READ_TIMEOUT)",
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)
