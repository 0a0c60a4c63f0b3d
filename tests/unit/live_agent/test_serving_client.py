"""ServingClient over HTTP/1.1 keep-alive: one connection reused, a closed one replaced."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chaintrade.chain import ChainContext, ChainEvent, StepTrace
from chaintrade.domain import HEADER_CHAIN_ID, HEADER_REQUEST_ID, HEADER_SOURCE_SERVICE
from chaintrade.schemas import BarIn
from live_agent.serving_client import ServingClient

BAR = BarIn(symbol="EURUSD", timeframe="H1", time=datetime(2024, 1, 2, tzinfo=UTC), open=1.1,
            high=1.2, low=1.0, close=1.15, tick_volume=10, spread=1)  # fmt: skip


class ListSink:
    def __init__(self) -> None:
        self.events: list[ChainEvent] = []

    def emit(self, event: ChainEvent) -> None:
        self.events.append(event)


class KeepAliveServing:
    """An HTTP/1.1 server answering /predict; ``close_after`` drops the connection after each
    answer without saying so (as a server does when its keep-alive timeout passes)."""

    def __init__(self, close_after: bool) -> None:
        self.requests: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.close_after = close_after
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.client_address[1], dict(self.headers), body))
                bar = body["bar"]
                data = json.dumps({"symbol": bar["symbol"], "prediction": 0.6, "strength": 0.2,
                                   "confidence": 0.8, "model_name": "m", "model_version": "1",
                                   "feature_timestamp": bar["time"]}).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = close_after

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=[False, True], ids=["kept_alive", "closed_by_server"])
def serving(request: pytest.FixtureRequest) -> Iterator[KeepAliveServing]:
    server = KeepAliveServing(close_after=request.param)
    yield server
    server.close()


def test_client_reuses_one_connection_and_replaces_one_the_server_closed(
    serving: KeepAliveServing,
) -> None:
    chain = ChainContext(ListSink())
    traces = [StepTrace() for _ in range(3)]
    with ServingClient(serving.url, token="s3cret", retries=0) as client:
        for trace in traces:
            assert client.predict(BAR, chain, trace).strength == 0.2
            time.sleep(0.1)  # idle: a server that closes has closed by now
    # No attempt was lost to a stale connection: each call succeeded on its first attempt.
    assert [[(d.attempt, d.status) for d in t.dependencies] for t in traces] == [[(1, "ok")]] * 3
    ports = {port for port, _, _ in serving.requests}  # one client port per TCP connection
    assert len(ports) == (3 if serving.close_after else 1)
    for _, headers, body in serving.requests:
        assert headers["Authorization"] == "Bearer s3cret"
        assert uuid.UUID(headers[HEADER_CHAIN_ID]) == chain.chain_id
        uuid.UUID(headers[HEADER_REQUEST_ID])
        assert headers[HEADER_SOURCE_SERVICE] == "live_agent"
        assert BarIn.model_validate(body["bar"]) == BAR
