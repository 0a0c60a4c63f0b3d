"""A local fake of the Telegram Bot API for tests and dry runs: a real HTTP server in a thread
that records ``sendMessage`` calls and serves queued ``getUpdates`` (with offsets and a short
long-poll), so the bot's HTTP code runs unchanged against it (``CHAINTRADE_TELEGRAM_API_URL``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeBotApi:
    """``with FakeBotApi(token) as api:`` → ``api.url``; ``api.sent``; ``api.push(chat, text)``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._next_id = 1
        self._cond = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeBotApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def push(self, chat_id: int, text: str) -> None:
        """Queue a message from ``chat_id`` for the next ``getUpdates``."""
        with self._cond:
            self._updates.append(
                {
                    "update_id": self._next_id,
                    "message": {"message_id": self._next_id, "chat": {"id": chat_id}, "text": text},
                }
            )
            self._next_id += 1
            self._cond.notify_all()

    def wait_sent(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until ``n`` messages were sent (or time out); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.sent) < n and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return list(self.sent)

    def _answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self.requests.append(method)
            if method == "sendMessage":
                if "chat_id" not in body or not body.get("text"):
                    return 400, {"ok": False, "description": "Bad Request: message text is empty"}
                self.sent.append(body)
                self._cond.notify_all()
                return 200, {"ok": True, "result": {"message_id": len(self.sent)}}
            if method == "getUpdates":
                offset = int(body.get("offset") or 0)
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                deadline = time.monotonic() + min(float(body.get("timeout") or 0), 1.0)
                while not self._updates and time.monotonic() < deadline:
                    self._cond.wait(0.05)
                return 200, {"ok": True, "result": list(self._updates)}
        return 404, {"ok": False, "description": "Not Found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                prefix = f"/bot{fake.token}/"
                if not self.path.startswith(prefix):
                    status, reply = 401, {"ok": False, "description": "Unauthorized"}
                else:
                    length = int(self.headers.get("content-length") or 0)
                    body = json.loads(self.rfile.read(length) or b"{}")
                    status, reply = fake._answer(self.path[len(prefix) :], body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def serve_in_thread(app: Any, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yield its URL."""
    import socket

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"uvicorn did not start on {url}")
    httpx.get(f"{url}/healthz", timeout=5.0)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
