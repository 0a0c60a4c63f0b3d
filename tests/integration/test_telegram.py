"""Telegram alerts and commands over HTTP against a local fake Bot API server."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from chaintrade.monitoring.events import AlertRaised, AlertReason, Severity
from chaintrade.monitoring.settings import TelegramSettings
from chaintrade.monitoring.telegram import BotApi, TelegramAlertSink, TelegramCommands
from chaintrade.monitoring.testing import FakeBotApi
from chaintrade.monitoring.view import ViewStatus

pytestmark = pytest.mark.integration
TOKEN = "123456:SECRET-token-value"
ALLOWED, OTHER = 4242, 999


def settings(url: str, tmp_path: Path, **kw: object) -> TelegramSettings:
    values: dict[str, object] = {
        "token": TOKEN,
        "api_url": url,
        "chat_ids": f"{ALLOWED},-1001",
        "kill_file": tmp_path / "agent" / "KILL",
        "poll_timeout_s": 1,
    }
    values.update(kw)
    return TelegramSettings(**values)  # type: ignore[arg-type]


def alert(subject: str = "prediction") -> AlertRaised:
    return AlertRaised(AlertReason.LATENCY_SPIKE, Severity.WARNING, subject, "p95 80 ms")


def test_alerts_reach_every_allowed_chat_deduplicated_and_rate_limited(tmp_path: Path) -> None:
    now = [0.0]
    with FakeBotApi(TOKEN) as api:
        sink = TelegramAlertSink(
            settings(api.url, tmp_path, rate_limit_per_min=3, dedup_window_s=60),
            clock=lambda: now[0],
        )
        assert sink.send(alert())
        assert [m["chat_id"] for m in api.sent] == [-1001, ALLOWED]
        assert "latency_spike" in api.sent[0]["text"] and "p95 80 ms" in api.sent[0]["text"]
        assert not sink.send(alert())  # the same reason + subject within the window
        assert sink.send(alert("serving")) and sink.send(alert("agent"))
        assert not sink.send(alert("risk"))  # 4th in a minute
        assert sink.dropped == {"duplicate": 1, "rate_limited": 1, "failed": 0}
        now[0] = 61.0  # a minute later: both limits have passed
        assert sink.send(alert()) and sink.send(alert("risk"))
        assert len(api.sent) == 2 * 5


def test_the_token_never_reaches_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeBotApi("other:token") as api:  # refuses our token: 401
        sink = TelegramAlertSink(settings(api.url, tmp_path))
        assert not sink.send(alert())
    down = TelegramAlertSink(settings("http://127.0.0.1:9", tmp_path))  # nothing listens
    assert not down.send(alert())
    assert "HTTP 401" in caplog.text and "ConnectError" in caplog.text
    assert TOKEN not in caplog.text and "SECRET" not in caplog.text


def test_read_only_commands_answer_allowed_chats_only(tmp_path: Path, clean_db: str) -> None:
    with FakeBotApi(TOKEN) as api:
        s = settings(api.url, tmp_path)
        bot = TelegramCommands(s, ViewStatus(clean_db, kill_file=s.kill_file, state_dir=None))
        api.push(OTHER, "/status")
        api.push(ALLOWED, "/status")
        api.push(ALLOWED, "/positions")
        api.push(ALLOWED, "/pnl@chaintrade_bot")
        api.push(ALLOWED, "hello")
        assert bot.poll_once() == 5
        sent = api.wait_sent(3)
        assert [m["chat_id"] for m in sent] == [ALLOWED] * 3
        assert sent[0]["text"].startswith("Trading: ACTIVE")
        assert sent[1]["text"] == "No open positions."
        assert sent[2]["text"] == "No closed trades yet."
        assert bot.poll_once(timeout_s=0) == 0  # the offset acknowledged the updates


def test_halt_needs_the_allowed_chat_and_the_confirmation_code(
    tmp_path: Path, clean_db: str
) -> None:
    now = [0.0]
    with FakeBotApi(TOKEN) as api:
        s = settings(api.url, tmp_path, halt_confirm_s=30)
        kill = s.kill_file
        assert kill is not None
        bot = TelegramCommands(
            s, ViewStatus(clean_db, kill_file=kill, state_dir=None), clock=lambda: now[0]
        )
        api.push(OTHER, "/halt")
        api.push(ALLOWED, "/halt")
        bot.poll_once()
        (ask,) = api.wait_sent(1)
        code = re.search(r"/confirm (\w+)", ask["text"])
        assert code is not None and not kill.exists()
        api.push(OTHER, f"/confirm {code[1]}")  # not allow-listed: ignored
        api.push(ALLOWED, "/confirm nope")
        bot.poll_once()
        assert "Wrong confirmation code" in api.wait_sent(2)[1]["text"] and not kill.exists()

        api.push(ALLOWED, "/halt")
        bot.poll_once()
        code = re.search(r"/confirm (\w+)", api.wait_sent(3)[2]["text"])
        assert code is not None
        now[0] = 31.0  # too late
        api.push(ALLOWED, f"/confirm {code[1]}")
        bot.poll_once()
        assert "expired" in api.wait_sent(4)[3]["text"] and not kill.exists()

        api.push(ALLOWED, "/halt")
        bot.poll_once()
        code = re.search(r"/confirm (\w+)", api.wait_sent(5)[4]["text"])
        assert code is not None
        api.push(ALLOWED, f"/confirm {code[1]}")
        bot.poll_once()
        assert api.wait_sent(6)[5]["text"].startswith("HALTED") and kill.exists()
        api.push(ALLOWED, "/status")
        bot.poll_once()
        assert api.wait_sent(7)[6]["text"].startswith("Trading: HALTED (kill file)")


def test_bot_api_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    from chaintrade.errors import ConfigError

    with pytest.raises(ConfigError, match="CHAINTRADE_TELEGRAM_TOKEN"):
        BotApi(TelegramSettings(chat_ids="1"))


def test_a_bot_api_that_is_down_is_a_failed_poll_not_a_crash(tmp_path: Path, clean_db: str) -> None:
    s = settings("http://127.0.0.1:9", tmp_path)
    bot = TelegramCommands(s, ViewStatus(clean_db, kill_file=s.kill_file, state_dir=None))
    assert bot.poll_once(timeout_s=0) == 0 and bot.failed
