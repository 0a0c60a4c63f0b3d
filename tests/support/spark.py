"""A Spark standalone cluster for tests: one Master and one Worker from the pyspark wheel,
on loopback and free ports, stopped on exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from chaintrade.settings import PROJECT_ROOT


@dataclass(frozen=True)
class SparkCluster:
    """Where the master listens, the environment its processes share, their logs."""

    url: str
    env: dict[str, str]
    logs: Path

    def worker_log(self) -> str:
        return (self.logs / "worker.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise TimeoutError(f"{what} after {timeout} s")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # spark-class execs the JVM: this is its pid
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def standalone_cluster(work: Path, *, cores: int = 2, memory: str = "2g") -> Iterator[SparkCluster]:
    """Start a Master and a Worker; yield once the worker registered; stop both on exit."""
    import pyspark

    from chaintrade.java import ensure_java

    ensure_java()
    home = Path(pyspark.__file__).parent
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    port = _free_port()
    url = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    master_cmd = [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
    master_cmd += ["--port", str(port), "--webui-port", str(_free_port())]
    master = subprocess.Popen(
        master_cmd,
        env=env,
        stdout=(logs / "master.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_for(lambda: _listening(port), f"no master on port {port}", 90)
        worker_cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"]
        worker_cmd += ["--cores", str(cores), "--memory", memory, "--work-dir", str(work)]
        worker_cmd += ["--webui-port", str(_free_port()), url]
        worker = subprocess.Popen(
            worker_cmd,
            env=env,
            stdout=(logs / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        cluster = SparkCluster(url, env, logs)
        _wait_for(
            lambda: "Successfully registered with master" in cluster.worker_log(),
            "the worker did not register",
            90,
        )
        yield cluster
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)
