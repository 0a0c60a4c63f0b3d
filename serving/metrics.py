"""Prometheus metrics of the service (served on BentoML's ``/metrics``).

BentoML serves ``/metrics`` from ``prometheus_client``'s multiprocess files. A metric's
values are bound to that mode when its first labelled child is created, but
``prometheus_client`` picks the mode once, at import: imported before the worker sets
``PROMETHEUS_MULTIPROC_DIR`` (by this module, or by anything else in the process), every
value would stay in memory and ``/metrics`` would miss them. :func:`follow_multiprocess_mode`
re-picks the mode; the service calls it before its first metric is touched.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client.metrics import MetricWrapperBase


def follow_multiprocess_mode() -> bool:
    """Use multiprocess values if ``PROMETHEUS_MULTIPROC_DIR`` is set now; True if it is."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        return False
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()
    return True


# 0.1 ms .. 1 s: the interesting part is below 5 ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05,
            0.1, 0.25, 1.0)  # fmt: skip

STAGE_SECONDS = Histogram(
    "chaintrade_serving_stage_seconds",
    "Time per stage of a prediction (features, feast_read, member, ensemble, total).",
    ["endpoint", "stage"],
    buckets=_BUCKETS,
)
CACHE = Counter("chaintrade_serving_cache_total", "Prediction cache lookups.", ["result"])
REFUSED = Counter("chaintrade_serving_refused_total", "Refused requests by reason.", ["reason"])
FEAST_PUSHES = Counter(
    "chaintrade_serving_feast_push_total", "Background Feast pushes by outcome.", ["status"]
)
MODEL_VERSION = Gauge(
    "chaintrade_serving_model_version",
    "Registered version of the champion being served (1 on the served version).",
    ["model", "version"],
    multiprocess_mode="livemax",
)
RELOADS = Counter("chaintrade_serving_model_reloads_total", "Champion hot reloads.", ["status"])

_STAGES: dict[tuple[str, str], MetricWrapperBase] = {}


def observe_stage(endpoint: str, stage: str, seconds: float) -> None:
    """``STAGE_SECONDS.labels(endpoint, stage).observe(seconds)`` with the child kept here
    (``labels`` costs a lock and label checks on every call of the hot path)."""
    child = _STAGES.get((endpoint, stage))
    if child is None:
        child = _STAGES.setdefault((endpoint, stage), STAGE_SECONDS.labels(endpoint, stage))
    child.observe(seconds)  # type: ignore[attr-defined]
