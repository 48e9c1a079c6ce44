"""What the API refuses before a route reads a request: a body that stops arriving, a JSON body
that is not UTF-8 or nests too deep. Each refusal is an
error in the documented shape (api.app maps them), never a 500 and never a held connection."""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.config import Settings
from worker.errors import InvalidInput
from worker.spec import too_deep


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
    if why := too_deep(body, max_depth):
        raise InvalidInput(f"body {why}", field="body")


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
    coroutine until then, and nothing after it (uploads hold no database connection meanwhile).
    The 408 is sent from here and the route is told the client left, so it stops reading; what
    the route answers then is dropped."""

    def __init__(self, app: ASGIApp, seconds: float, answer: Callable[[Request, str], Response]) -> None:
        self.app = app
        self.seconds = seconds
        self.answer = answer  # the error in the documented shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_done = answered = started = False

        async def timed() -> Message:
            nonlocal body_done, answered
            if body_done:  # e.g. a streamed response listening for a disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                if not started:
                    why = f"no byte of the body arrived for {self.seconds:g} s (RERANK_BODY_READ_TIMEOUT)"
                    await self.answer(Request(scope), why)(scope, receive, send)
                    answered = True
                body_done = True
                return {"type": "http.disconnect"}
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, timed, guarded)
