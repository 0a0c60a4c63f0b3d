"""Telegram over the Bot API (httpx): an alert sink and a command handler.

The sink sends to every allow-listed chat, at most ``rate_limit_per_min`` messages a minute,
and drops an alert whose reason + subject was sent within ``dedup_window_s``. The handler
long-polls ``getUpdates`` and answers ``/status``, ``/positions`` and ``/pnl`` (read-only) and a
guarded ``/halt``: allow-listed chats only, confirmed with ``/confirm <code>`` in time; it
writes the agent's kill file. Messages from other chats are ignored (logged by chat id).

The token is part of every Bot API URL: it never reaches a log line or an exception text
raised from here (errors are reported by type and status only).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from chaintrade.errors import ConfigError
from chaintrade.monitoring.events import AlertRaised
from chaintrade.monitoring.settings import TelegramSettings

log = logging.getLogger(__name__)


class _Redact(logging.Filter):
    """Replaces the token in records of the ``httpx`` logger (it logs every request URL)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "<token>"), ()
        return True


def _redact_httpx_logs(secret: str) -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _Redact) and f.secret == secret for f in logger.filters):
        logger.addFilter(_Redact(secret))


class BotApi:
    """The few Bot API methods used, over one reused ``httpx.Client``."""

    def __init__(self, settings: TelegramSettings, client: httpx.Client | None = None) -> None:
        if settings.token is None:
            raise ConfigError("CHAINTRADE_TELEGRAM_TOKEN is not set", reason="telegram_no_token")
        secret = settings.token.get_secret_value()
        _redact_httpx_logs(secret)
        self._base = f"{settings.api_url.rstrip('/')}/bot{secret}"
        self._client = client or httpx.Client(timeout=settings.http_timeout_s)

    def call(self, method: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        """POST a method; returns ``result`` or None (the failure is logged without the URL)."""
        try:
            url = f"{self._base}/{method}"
            if timeout is None:
                response = self._client.post(url, json=payload)
            else:
                response = self._client.post(url, json=payload, timeout=timeout)
        except httpx.HTTPError as exc:
            log.warning("telegram %s failed: %s", method, type(exc).__name__)
            return None
        if response.status_code != 200:
            log.warning("telegram %s answered HTTP %s", method, response.status_code)
            return None
        body = response.json()
        if not body.get("ok"):
            log.warning("telegram %s refused: %s", method, body.get("description", "")[:200])
            return None
        return body.get("result")

    def send_message(self, chat_id: int, text: str) -> bool:
        return self.call("sendMessage", {"chat_id": chat_id, "text": text[:4000]}) is not None

    def close(self) -> None:
        self._client.close()


class TelegramAlertSink:
    """Alerts to the allow-listed chats, rate-limited and deduplicated."""

    def __init__(
        self,
        settings: TelegramSettings,
        api: BotApi | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not settings.allowed_chats:
            raise ConfigError(
                "CHAINTRADE_TELEGRAM_CHAT_IDS is empty: no chat may receive alerts",
                reason="telegram_no_chats",
            )
        self.settings = settings
        self.api = api or BotApi(settings)
        self._clock = clock
        self._sent_at: deque[float] = deque()
        self._last_key: dict[str, float] = {}
        self.dropped: dict[str, int] = {"duplicate": 0, "rate_limited": 0, "failed": 0}

    def send(self, alert: AlertRaised) -> bool:
        now = self._clock()
        last = self._last_key.get(alert.dedup_key)
        if last is not None and now - last < self.settings.dedup_window_s:
            self.dropped["duplicate"] += 1
            return False
        while self._sent_at and now - self._sent_at[0] >= 60.0:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.settings.rate_limit_per_min:
            self.dropped["rate_limited"] += 1
            return False
        self._sent_at.append(now)
        self._last_key[alert.dedup_key] = now
        ok = all(
            self.api.send_message(c, alert.text()) for c in sorted(self.settings.allowed_chats)
        )
        if not ok:
            self.dropped["failed"] += 1
        return ok


class StatusSource(Protocol):
    """What the read-only commands show."""

    def status(self) -> str: ...

    def positions(self) -> str: ...

    def pnl(self) -> str: ...


@dataclass
class _PendingHalt:
    code: str
    chat_id: int
    expires: float


class TelegramCommands:
    """Long-polls ``getUpdates`` and answers commands from allow-listed chats."""

    def __init__(
        self,
        settings: TelegramSettings,
        source: StatusSource,
        api: BotApi | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if settings.kill_file is None:
            raise ConfigError(
                "CHAINTRADE_TELEGRAM_KILL_FILE is not set: /halt needs the agent's kill file",
                reason="telegram_no_kill_file",
            )
        self.settings = settings
        self.source = source
        self.api = api or BotApi(settings)
        self._clock = clock
        self._offset: int | None = None
        self._pending: _PendingHalt | None = None
        self._stop = False
        self.failed = False

    def poll_once(self, timeout_s: int | None = None) -> int:
        """One ``getUpdates`` long-poll; returns how many updates were handled."""
        timeout = self.settings.poll_timeout_s if timeout_s is None else timeout_s
        payload: dict[str, Any] = {"timeout": timeout, "allowed_updates": ["message"]}
        if self._offset is not None:
            payload["offset"] = self._offset
        updates = self.api.call("getUpdates", payload, timeout=timeout + 10.0)
        self.failed = updates is None
        for update in updates or []:
            self._offset = int(update["update_id"]) + 1
            message = update.get("message") or {}
            chat = (message.get("chat") or {}).get("id")
            text = str(message.get("text") or "").strip()
            if chat is None or not text.startswith("/"):
                continue
            if int(chat) not in self.settings.allowed_chats:
                log.warning("telegram command from chat %s ignored (not allow-listed)", chat)
                continue
            self.api.send_message(int(chat), self.handle(int(chat), text))
        return len(updates or [])

    def run(self, retry_s: float = 5.0) -> None:
        """Poll until :meth:`stop`; wait ``retry_s`` after a failed poll (API down)."""
        while not self._stop:
            self.poll_once()
            if self.failed:
                time.sleep(retry_s)

    def stop(self) -> None:
        self._stop = True

    def handle(self, chat_id: int, text: str) -> str:
        """The answer to one command from an allow-listed chat."""
        command, *args = text.split()
        command = command.split("@", 1)[0].lower()
        try:
            if command == "/status":
                return self.source.status()
            if command == "/positions":
                return self.source.positions()
            if command == "/pnl":
                return self.source.pnl()
            if command == "/halt":
                return self._ask_halt(chat_id)
            if command == "/confirm":
                return self._confirm_halt(chat_id, args[0] if args else "")
        except Exception as exc:  # an answer, not a dead bot
            log.exception("telegram command %s failed", command)
            return f"{command} failed: {type(exc).__name__}"
        return "Commands: /status /positions /pnl /halt"

    def _ask_halt(self, chat_id: int) -> str:
        code = secrets.token_hex(3)
        self._pending = _PendingHalt(code, chat_id, self._clock() + self.settings.halt_confirm_s)
        return (
            f"HALT stops all new orders (closes included) until the kill file is removed.\n"
            f"Send /confirm {code} within {self.settings.halt_confirm_s:.0f} s."
        )

    def _confirm_halt(self, chat_id: int, code: str) -> str:
        pending, self._pending = self._pending, None
        if pending is None or pending.chat_id != chat_id:
            return "No /halt to confirm from this chat."
        if self._clock() > pending.expires:
            return "Confirmation expired; send /halt again."
        if not secrets.compare_digest(code, pending.code):
            return "Wrong confirmation code; nothing was halted."
        kill = self.settings.kill_file
        assert kill is not None  # checked in __init__
        kill.parent.mkdir(parents=True, exist_ok=True)
        kill.write_text(f"halted from telegram chat {chat_id} at {datetime.now(UTC).isoformat()}\n")
        log.warning("agent halted from telegram chat %s (kill file %s)", chat_id, kill)
        return f"HALTED: kill file written ({kill}). Remove it to resume."
