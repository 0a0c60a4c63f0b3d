"""Bearer auth (401) and the request size limit (413) as plain ASGI middleware."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from serving.middleware import BearerAuth, BodyLimit


async def echo(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.anyio
async def test_requests_without_the_token_get_401_health_stays_open() -> None:
    async with client(BearerAuth(echo, token="s3cret")) as c:
        assert (await c.post("/predict", content=b"x")).status_code == 401
        bad = await c.post("/predict", content=b"x", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["reason"] == "unauthorized"
        ok = await c.post("/predict", content=b"x", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.content == b"x"
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200


@pytest.mark.anyio
async def test_bodies_over_the_limit_get_413_also_when_streamed() -> None:
    async with client(BodyLimit(echo, max_bytes=100)) as c:
        assert (await c.post("/predict", content=b"a" * 100)).content == b"a" * 100
        big = await c.post("/predict", content=b"a" * 101)
        assert big.status_code == 413 and big.json()["reason"] == "request_too_large"

        async def chunks() -> Any:
            for _ in range(5):
                yield b"a" * 30

        assert (await c.post("/predict", content=chunks())).status_code == 413


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
