"""Text that PostgreSQL cannot store never reaches a route: `UnstorableTextGuard` answers 422 when the path, the
query or the body holds a NUL character (or, in JSON, an unpaired surrogate), for every route at once.

PostgreSQL's text types cannot hold U+0000 and its UTF-8 encoding cannot hold a lone surrogate; passed on, either
fails inside psycopg as a 500. One ASGI middleware sees every request before routing, so no route needs its own
check and the answer is the same everywhere: `{"detail": "<where> contains …"}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NUL: Final = "\x00"
_FORM: Final = "application/x-www-form-urlencoded"


def unstorable(text: str) -> str | None:
    """Why PostgreSQL could not store `text`, or None when it can."""
    if _NUL in text:
        return "contains a NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (an unpaired surrogate)"
    return None


def _json_strings(document: object) -> Iterator[tuple[str, str]]:
    """(where, text) of every string in a parsed JSON body, object keys included; a loop, not recursion, since
    the body may nest as deep as the parser allows."""
    pending: list[tuple[str, object]] = [("body", document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, list):
            pending.extend((f"{where}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                pending += [(f"a key of {where}", key), (f"{where}.{key}", item)]


def _query_texts(query: str, where: str) -> Iterator[tuple[str, str]]:
    # Decoded as Starlette decodes it (latin-1, then percent-decoding as UTF-8 with replacement).
    for name, value in parse_qsl(query, keep_blank_values=True):
        yield f"the name of {where} {name!r}", name
        yield f"{where} {name!r}", value


def _body_texts(body: bytes, media_type: str) -> Iterator[tuple[str, str]]:
    """The texts a route could read from the body. JSON is parsed (a NUL arrives escaped as \\u0000); a body
    that does not parse is left to the route, which answers it. Other text bodies (CSV) are checked whole;
    multipart bodies are not read here (no route takes one)."""
    if not body:
        return
    if media_type in {"", "application/json"} or media_type.endswith("+json"):
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested too deep to parse: the route refuses it
            return
        yield from _json_strings(parsed)
    elif media_type == _FORM:
        yield from _query_texts(body.decode("latin-1"), "form field")
    elif not media_type.startswith("multipart/") and b"\x00" in body:
        yield "body", _NUL


def find_unstorable_text(*, path: str, query: str, body: bytes, media_type: str) -> str | None:
    """The 422 message for the first text PostgreSQL cannot store, or None when the request has none."""
    texts = [("the path", path), *_query_texts(query, "query parameter"), *_body_texts(body, media_type)]
    for where, text in texts:
        if (why := unstorable(text)) is not None:
            return f"{where} {why}, which no text field can hold"
    return None


class UnstorableTextGuard:
    """ASGI middleware: reads the body once (routes read it again from the copy), checks it with the path and
    the query, and answers 422 itself or passes the request on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        media_type = Headers(scope=scope).get("content-type", "").split(";")[0].strip().lower()
        problem = find_unstorable_text(
            path=scope["path"], query=scope["query_string"].decode("latin-1"), body=body, media_type=media_type
        )
        if problem is not None:
            await JSONResponse(status_code=422, content={"detail": problem})(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out `messages` first, then defers to the real one (which reports a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
