"""The Feast online push, in its own process so it never holds the request process's GIL.

Parent side: :class:`FeastPushProcess` starts ``python -m serving.feast_writer`` and hands
it feature rows over a pipe (one JSON line each; a feeder thread writes, so ``submit``
costs a queue put). Child side: :func:`main` reads the lines, keeps the newest row per
(symbol, timeframe) — the online store holds only the latest row of an entity — and pushes
them with ``PushMode.ONLINE``. A row whose push fails stays pending (a newer row of the
same symbol supersedes it) and is retried with backoff; pending rows are kept in a spool
file while Feast is down and on exit, and replayed when the writer starts again. The
child reports progress (rows seen, pushed, failed, pending) on stdout, one JSON line each.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from chaintrade.settings import PROJECT_ROOT, Settings, get_settings
from serving import metrics
from serving.settings import ServingSettings, get_serving_settings

log = logging.getLogger(__name__)

SPOOL_NAME = "feast_push.json"
_Key = tuple[str, str]


def spool_path(settings: Settings) -> Path:
    return settings.spool_dir / "serving" / SPOOL_NAME


class FeastPushProcess:
    """The parent's handle on the writer process."""

    def __init__(self, settings: Settings, serving: ServingSettings) -> None:
        env = {
            **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            "CHAINTRADE_HOME": str(settings.home),
            "CHAINTRADE_FEATURE_REPO": str(settings.feature_repo),
            "CHAINTRADE_FEAST_ENV": settings.feast_env,
            "CHAINTRADE_SERVING_FEAST_RETRY_MAX_S": str(serving.feast_retry_max_s),
            "CHAINTRADE_SERVING_FEAST_PUSH_INTERVAL_S": str(serving.feast_push_interval_s),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        if settings.redis_url:
            env["CHAINTRADE_REDIS_URL"] = settings.redis_url
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.feast_writer"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._queue: queue.SimpleQueue[tuple[int, str, str, int, np.ndarray] | None] = (
            queue.SimpleQueue()
        )
        self._seq = 0
        self._interval_s = serving.feast_push_interval_s
        self._progress = threading.Condition()
        self.seen = 0
        self.pending = 0
        self.pushed = 0
        self.errors = 0
        self.last_error: str | None = None
        self._feeder = threading.Thread(target=self._feed, name="feast-feeder", daemon=True)
        self._reader = threading.Thread(target=self._read, name="feast-progress", daemon=True)
        self._feeder.start()
        self._reader.start()

    def submit(self, symbol: str, timeframe: str, event_ts_ns: int, values: np.ndarray) -> None:
        """Queue one feature row (``BASE_FEATURES`` order) for the online store."""
        self._seq += 1
        self._queue.put((self._seq, symbol, timeframe, event_ts_ns, values))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted row is pushed (tests, shutdown); False on timeout."""
        target = self._seq
        with self._progress:
            return self._progress.wait_for(
                lambda: (self.seen >= target and self.pending == 0) or not self.alive, timeout
            ) and (self.seen >= target and self.pending == 0)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, timeout: float = 30.0) -> None:
        """Let the writer push (or spool) what it holds, then stop it."""
        self._queue.put(None)
        self._feeder.join(timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(1.0)

    def _feed(self) -> None:
        """Write the newest row per (symbol, timeframe) at most every push interval.

        The child keeps only the newest row of a key anyway; coalescing here as well spares
        the request process a thread wake-up and a pipe write per bar, and the child a
        wake-up per bar (both compete with requests for the CPU).
        """
        stdin = self.proc.stdin
        assert stdin is not None
        done = False
        try:
            while not done and (item := self._queue.get()) is not None:
                if self._interval_s > 0:
                    time.sleep(self._interval_s)
                batch: dict[_Key, tuple[int, str, str, int, np.ndarray]] = {}
                while item is not None:
                    batch[(item[1], item[2])] = item
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                done = item is None
                lines = [_line(*row) for row in sorted(batch.values())]
                stdin.write(b"".join(lines))
                stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            log.error("feast writer process is gone: %s", exc)
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                report = json.loads(raw)
            except json.JSONDecodeError:
                continue
            with self._progress:
                metrics.FEAST_PUSHES.labels("ok").inc(max(report["pushed"] - self.pushed, 0))
                metrics.FEAST_PUSHES.labels("error").inc(max(report["errors"] - self.errors, 0))
                self.seen, self.pending = report["seen"], report["pending"]
                self.pushed, self.errors = report["pushed"], report["errors"]
                self.last_error = report.get("last_error") or self.last_error
                self._progress.notify_all()
        with self._progress:
            self._progress.notify_all()


def _line(seq: int, symbol: str, timeframe: str, ts: int, values: np.ndarray) -> bytes:
    row = {
        "seq": seq,
        "symbol": symbol,
        "timeframe": timeframe,
        "ts": ts,
        "values": values.tolist(),
    }
    return json.dumps(row).encode() + b"\n"


# --------------------------------------------------------------------------- the child


class _Writer:
    """The child's state: newest pending row per key, the spool, the counters."""

    def __init__(self, push: Callable[[str, dict[str, Any]], None], spool: Path) -> None:
        self.push = push
        self.spool = spool
        self.pending: dict[_Key, dict[str, Any]] = {}
        self.lock = threading.Condition()
        self.closed = False
        self.seen = self.pushed = self.errors = 0
        self.last_error: str | None = None
        if spool.exists():
            for row in json.loads(spool.read_text()):
                self.pending[(row["symbol"], row["timeframe"])] = row

    def read(self, lines: IO[bytes]) -> None:
        for raw in lines:
            row = json.loads(raw)
            with self.lock:
                self.pending[(row["symbol"], row["timeframe"])] = row
                self.seen = max(self.seen, row["seq"])
                self.lock.notify()
        with self.lock:
            self.closed = True
            self.lock.notify()

    def run(
        self, report: Callable[[dict[str, Any]], None], retry_max_s: float, interval_s: float
    ) -> None:
        """Push rounds at most every ``interval_s`` (rows coalesce meanwhile) until EOF."""
        backoff = 0.0
        while True:
            with self.lock:
                self.lock.wait_for(lambda: self.pending or self.closed, timeout=None)
                if not self.pending and self.closed:
                    break
                batch = dict(self.pending)
            started = time.monotonic()
            failed = self._push(batch)
            self._save_spool(failed)
            report(self.status())
            if failed:
                if self.closed and backoff >= retry_max_s:
                    break  # the spool holds them for the next start
                backoff = min(max(backoff * 2, 0.1), retry_max_s)
                time.sleep(backoff)
            else:
                backoff = 0.0
                if not self.closed:
                    time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
        report(self.status())

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {"seen": self.seen, "pending": len(self.pending), "pushed": self.pushed,
                    "errors": self.errors, "last_error": self.last_error}  # fmt: skip

    def _push(self, batch: dict[_Key, dict[str, Any]]) -> bool:
        failed = False
        for key, row in batch.items():
            try:
                self.push(row["timeframe"], row)
            except Exception as exc:  # Feast down: keep the row, retry later
                failed = True
                with self.lock:
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                continue
            with self.lock:
                self.pushed += 1
                if self.pending.get(key) is row:  # not superseded meanwhile
                    del self.pending[key]
        return failed

    def _save_spool(self, failed: bool) -> None:
        """Spool the pending rows after a failure or at exit; drop the spool once empty."""
        with self.lock:
            rows = list(self.pending.values())
        if rows and (failed or self.closed):
            self.spool.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.spool.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows))
            os.replace(tmp, self.spool)
        elif not rows and self.spool.exists():
            self.spool.unlink()


def feast_push(settings: Settings) -> Callable[[str, dict[str, Any]], None]:
    """A function that pushes one row to the online store of ``settings``."""
    import pandas as pd
    from feast.data_source import PushMode

    from chaintrade.feature_store import PUSH_SOURCES, open_store
    from chaintrade.features import feature_columns

    store = open_store(settings)
    columns = {tf: feature_columns(tf) for tf in PUSH_SOURCES}

    def push(timeframe: str, row: dict[str, Any]) -> None:
        frame = pd.DataFrame([row["values"]], columns=columns[timeframe])
        frame.insert(0, "symbol", row["symbol"])
        frame.insert(1, "event_timestamp", pd.Timestamp(row["ts"], unit="ns", tz="UTC"))
        store.push(PUSH_SOURCES[timeframe], frame, to=PushMode.ONLINE)

    return push


def main() -> None:
    # The parent's process group gets SIGTERM/SIGINT on shutdown: finish from stdin's EOF
    # instead (the parent closes it, or dies), pushing or spooling what is pending.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    serving = get_serving_settings()
    writer = _Writer(feast_push(settings), spool_path(settings))
    out = sys.stdout

    def report(status: dict[str, Any]) -> None:
        out.write(json.dumps(status) + "\n")
        out.flush()

    reader = threading.Thread(target=writer.read, args=(sys.stdin.buffer,), daemon=True)
    reader.start()
    writer.run(report, serving.feast_retry_max_s, serving.feast_push_interval_s)


if __name__ == "__main__":
    main()
