"""ASGI middleware of the service: bearer-token auth (401) and a request size limit (413)."""

from __future__ import annotations

import hmac
import json
from typing import Any

OPEN_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs", "/docs.json", "/static_content")


async def _reject(send: Any, status: int, reason: str, message: str) -> None:
    body = json.dumps({"error": f"{reason}: {message}", "reason": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BearerAuth:
    """Every path but health checks, metrics and docs needs ``Authorization: Bearer <token>``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(OPEN_PATHS):
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _reject(send, 401, "unauthorized", "send Authorization: Bearer <token>")
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Bodies above ``max_bytes`` get 413 before the service parses them.

    The body is read here (it is small by construction) and replayed to the app, so a
    chunked body without ``Content-Length`` is limited as well.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_big = "request_too_large", f"the body limit is {self.max_bytes} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > self.max_bytes:
                    await _reject(send, 413, *too_big)
                    return
            except ValueError:
                await _reject(send, 400, "bad_request", "invalid Content-Length")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # disconnect
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reject(send, 413, *too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
