"""/metrics must show the service's metrics whatever imported prometheus_client first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# prometheus_client imported (single-process mode) BEFORE the worker sets the directory,
# as happens when anything in the process imports it early; then what BentoML's /metrics
# reads: a MultiProcessCollector over that directory.
SCRIPT = """
import os, sys
import prometheus_client, prometheus_client.multiprocess
from serving import metrics
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
if sys.argv[2] == "follow":
    assert metrics.follow_multiprocess_mode()
metrics.CACHE.labels("hit").inc()
metrics.MODEL_VERSION.labels("m", "7").set(1)
registry = prometheus_client.CollectorRegistry()
prometheus_client.multiprocess.MultiProcessCollector(registry)
print(prometheus_client.generate_latest(registry).decode())
"""


def _exposed(tmp_path: Path, mode: str) -> str:
    root = Path(__file__).resolve().parents[2]
    # Start in single-process mode whatever this process inherited (importing Feast here
    # sets PROMETHEUS_MULTIPROC_DIR in os.environ, which a child would otherwise inherit).
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("prometheus_multiproc")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), mode],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_metrics_reach_the_multiprocess_files_even_if_imported_before_the_dir_was_set(
    tmp_path: Path,
) -> None:
    text = _exposed(tmp_path, "follow")
    assert 'chaintrade_serving_cache_total{result="hit"} 1.0' in text
    assert 'chaintrade_serving_model_version{model="m",version="7"} 1.0' in text


def test_without_following_the_mode_the_metrics_would_be_missing(tmp_path: Path) -> None:
    """The failure the fix is for (so the test above can fail)."""
    text = _exposed(tmp_path, "stay")
    assert "chaintrade_serving_cache_total" not in text


def test_without_a_multiprocess_dir_nothing_changes() -> None:
    from serving import metrics

    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        pytest.skip("this process runs in multiprocess mode")
    assert metrics.follow_multiprocess_mode() is False
