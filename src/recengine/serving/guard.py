"""The checks every request passes before a route sees it, as one ASGI middleware: the API key,
the body size (413) and the content type (415); and the model name and version headers on the way out.

Written at the ASGI level so that it also covers routes FastAPI adds itself (the OpenAPI document),
and so that an oversized body is refused while it streams in, before any of it is parsed.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from recengine.serving.sagemaker import JSON, JSONLINES, media_type

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "x-api-key"
INVOCATION_PATH = re.compile(r"^/(invocations|endpoints/[^/]+/invocations)$")
BODY_METHODS = {"POST", "PUT", "PATCH"}
STATE_MODEL = "recengine_model"  # request.state key a route sets to the ServedModel it used


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        api_key: str | None = None,
        public_paths: frozenset[str] = frozenset({"/ping"}),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key.encode() if api_key else None
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if path not in self.public_paths and not self._authorized(headers):
            await _error(
                send, 401, "unauthorized", f"a valid API key is required in the {API_KEY_HEADER} header"
            )
            return
        method = scope.get("method", "GET")
        if method not in BODY_METHODS:
            await self.app(scope, receive, _with_model_headers(scope, send))
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await _error(send, 413, "body_too_large", f"the body is over {self.max_body_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _error(send, 413, "body_too_large", f"the body is over {self.max_body_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = headers.get("content-type", b"").decode("latin-1")
        if body or ctype:
            allowed = (JSON, JSONLINES) if INVOCATION_PATH.match(path) else (JSON,)
            if media_type(ctype) not in allowed:
                await _error(
                    send,
                    415,
                    "unsupported_media_type",
                    f"content type {ctype or '(none)'!r} is not accepted here; use {' or '.join(allowed)}",
                )
                return
        await self.app(scope, _replay(body, receive), _with_model_headers(scope, send))

    def _authorized(self, headers: dict[str, bytes]) -> bool:
        if self.api_key is None:
            return True
        given = headers.get(API_KEY_HEADER)
        if given is None:
            auth = headers.get("authorization", b"")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
        return given is not None and hmac.compare_digest(given, self.api_key)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body to the app, then waits for the disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_model_headers(scope: Scope, send: Send) -> Send:
    """Adds X-Model-Name and X-Model-Version for whichever model the route used."""
    state = scope.setdefault("state", {})

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            sm = state.get(STATE_MODEL)
            if sm is not None:
                extra = [(b"x-model-name", sm.name.encode()), (b"x-model-version", sm.version.encode())]
                message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _error(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
