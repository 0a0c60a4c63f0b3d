"""Run the deployables of the demo as real processes: ``bentoml serve`` and the live agent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx

from chaintrade.errors import ServiceUnavailable
from chaintrade.settings import PROJECT_ROOT, Settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a child process: ours, with the settings it must share."""
    env = dict(os.environ)
    env["CHAINTRADE_HOME"] = str(settings.home)
    if settings.db_url:
        env["CHAINTRADE_DB_URL"] = settings.db_url
    if settings.mlflow_tracking_uri:
        env["CHAINTRADE_MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the whole group (BentoML runs a process manager and workers), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def bentoml_serve(
    settings: Settings, *, port: int | None = None, log_path: Path, ready_timeout: float = 180.0
) -> Iterator[str]:
    """Start ``bentoml serve`` for the champion model; yield its URL; stop it on exit."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "bentoml"), "serve", "serving.service:ChaintradeService"]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=child_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(url, proc, log_path, ready_timeout)
            yield url
        finally:
            stop_process_group(proc)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise ServiceUnavailable(f"bentoml serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise ServiceUnavailable(f"bentoml serve not ready after {timeout:.0f} s; see {log_path}")


def run_agent_replay(
    settings: Settings,
    *,
    serving_url: str,
    start: str,
    symbols: list[str],
    timeframe: str,
    out_path: Path,
    agent_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the live agent over the simulator as its own process; return its JSON summary."""
    cmd = [sys.executable, "-m", "live_agent", "replay", "--serving-url", serving_url]
    cmd += ["--start", start, "--timeframe", timeframe, "--out", str(out_path)]
    for symbol in symbols:
        cmd += ["--symbol", symbol]
    env = child_env(settings, **(agent_env or {}))
    subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, check=True)
    result: dict[str, Any] = json.loads(out_path.read_text())
    return result
