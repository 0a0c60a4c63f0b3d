"""The job on a real standalone cluster (Master + Worker from the pyspark wheel, loopback),
started with spark-submit: same features and labels as the in-process implementation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyspark
import pytest

from chaintrade.features import compute_features, feature_columns
from chaintrade.labels import all_labels
from chaintrade.market_data import synthetic_bars
from chaintrade.pipeline import write_lake
from spark_jobs.session import ensure_java

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _wait_for_log(path: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in {path} after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    ensure_java()
    home = Path(pyspark.__file__).parent
    work = tmp_path_factory.mktemp("spark-worker")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": str(ROOT),
    }
    port, ui = _free_port(), _free_port()
    spark_class = str(home / "bin" / "spark-class")
    logs = work / "logs"
    logs.mkdir()
    master = subprocess.Popen(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        env=env,
        stdout=(logs / "master.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"spark://127.0.0.1:{port}"
    worker = None
    try:
        _wait_for_port(port)
        worker = subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "2g",
                "--work-dir",
                str(work),
                "--webui-port",
                str(_free_port()),
                url,
            ],
            env=env,
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        _wait_for_log(logs / "worker.log", "Successfully registered with master")
        yield url, env
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)


def test_spark_submit_on_a_standalone_cluster_equals_in_process(
    cluster: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = cluster
    bars = pd.concat(
        [
            synthetic_bars("EURUSD", timeframe="M5", start="2024-01-05", n=1500, seed=1),
            synthetic_bars("GBPUSD", timeframe="M5", start="2024-01-02", n=1200, seed=1),
        ],
        ignore_index=True,
    )
    write_lake(bars, tmp_path / "lake")
    submit = str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit")
    cmd = [submit, "--master", url, "--conf", "spark.driver.host=127.0.0.1"]
    cmd += [str(ROOT / "spark_jobs" / "build_features.py"), "--master", url]
    cmd += ["--bars", str(tmp_path / "lake" / "bars"), "--out", str(tmp_path / "offline")]
    cmd += ["--timeframes", "M5", "--chunk-bars", "400"]  # several chunks per symbol
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Connecting to master {url}" in done.stderr or "StandaloneAppClient" in done.stderr

    got = pd.read_parquet(tmp_path / "offline" / "bar_features" / "timeframe=M5")
    got = got.sort_values(["symbol", "time"]).reset_index(drop=True)
    want = pd.concat(
        [compute_features(g.reset_index(drop=True), "M5") for _, g in bars.groupby("symbol")]
    )
    want = want[~want["warmup"]].reset_index(drop=True)
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["symbol"], want["symbol"])
    np.testing.assert_allclose(
        got[feature_columns("M5")].to_numpy(float),
        want[feature_columns("M5")].to_numpy(float),
        rtol=0,
        atol=1e-9,
    )
    labels = pd.read_parquet(tmp_path / "offline" / "bar_labels" / "timeframe=M5")
    expected = all_labels(bars)  # default horizon: 15 minutes = 3 M5 bars
    assert len(labels) == len(expected)
    labels = labels.sort_values(["symbol", "time"]).reset_index(drop=True)
    np.testing.assert_array_equal(labels["label"], expected["label"])
    np.testing.assert_array_equal(
        labels["tb_label"].fillna(9).to_numpy(), expected["tb_label"].fillna(9).to_numpy()
    )
