"""The Feast writer's bookkeeping: newest row per symbol, retry, spool, replay.

The push function is injected: here a recorder that can be switched to fail like an
unreachable store (the real Feast push runs in the ASGI/HTTP tiers and the demo).
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

from serving.feast_writer import _Writer


class Store:
    def __init__(self) -> None:
        self.down = False
        self.rows: list[dict[str, Any]] = []

    def push(self, timeframe: str, row: dict[str, Any]) -> None:
        if self.down:
            raise ConnectionError("online store unreachable")
        self.rows.append(row)


def _lines(*rows: dict[str, Any]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in rows))


def _row(seq: int, symbol: str, ts: int) -> dict[str, Any]:
    return {"seq": seq, "symbol": symbol, "timeframe": "H1", "ts": ts, "values": [float(seq)]}


def test_rows_of_a_symbol_coalesce_to_the_newest_and_all_symbols_are_pushed(tmp_path: Path) -> None:
    store = Store()
    writer = _Writer(store.push, tmp_path / "spool.json")
    writer.read(_lines(_row(1, "EURUSD", 1), _row(2, "EURUSD", 2), _row(3, "GBPUSD", 2)))
    reports: list[dict[str, Any]] = []
    writer.run(reports.append, retry_max_s=0.1, interval_s=0.0)
    assert {(r["symbol"], r["ts"]) for r in store.rows} == {("EURUSD", 2), ("GBPUSD", 2)}
    assert reports[-1] == {"seen": 3, "pending": 0, "pushed": 2, "errors": 0, "last_error": None}
    assert not (tmp_path / "spool.json").exists()


def test_rows_are_spooled_while_the_store_is_down_and_replayed_by_the_next_writer(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool.json"
    store = Store()
    store.down = True
    writer = _Writer(store.push, spool)
    writer.read(_lines(_row(1, "EURUSD", 10)))
    reports: list[dict[str, Any]] = []
    writer.run(reports.append, retry_max_s=0.05, interval_s=0.0)  # gives up at EOF
    assert store.rows == [] and reports[-1]["pending"] == 1 and reports[-1]["errors"] >= 1
    assert "unreachable" in reports[-1]["last_error"]
    assert [r["ts"] for r in json.loads(spool.read_text())] == [10]

    store.down = False
    again = _Writer(store.push, spool)  # a restart: the spool is read first
    again.read(_lines())
    again.run(reports.append, retry_max_s=0.05, interval_s=0.0)
    assert [(r["symbol"], r["ts"]) for r in store.rows] == [("EURUSD", 10)]
    assert not spool.exists()


def test_a_row_that_failed_is_retried_until_the_store_is_back(tmp_path: Path) -> None:
    store = Store()
    store.down = True
    writer = _Writer(store.push, tmp_path / "spool.json")
    reader, feed = _pipe()
    threading.Thread(target=writer.read, args=(reader,), daemon=True).start()
    runner = threading.Thread(target=writer.run, args=(lambda _: None, 0.05, 0.0), daemon=True)
    runner.start()
    feed.write(json.dumps(_row(1, "EURUSD", 5)).encode() + b"\n")
    feed.flush()
    while writer.status()["errors"] < 2:
        threading.Event().wait(0.01)
    assert (tmp_path / "spool.json").exists()
    store.down = False
    deadline = time.monotonic() + 10
    while not store.rows and time.monotonic() < deadline:  # retried while stdin stays open
        threading.Event().wait(0.01)
    feed.close()
    runner.join(10)
    assert [r["ts"] for r in store.rows] == [5]
    assert not (tmp_path / "spool.json").exists()


def _pipe() -> tuple[Any, Any]:
    import os

    r, w = os.pipe()
    return os.fdopen(r, "rb"), os.fdopen(w, "wb")
