"""Alert events: immutable, past tense, with a reason code and a severity."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertReason(StrEnum):
    """Stable, countable reason codes of alerts."""

    LATENCY_SPIKE = "latency_spike"
    ERROR_RATE_JUMP = "error_rate_jump"
    MISSING_CHAINS = "missing_chains"
    STALE_DATA = "stale_data"
    PREDICTION_SHIFT = "prediction_shift"
    SERVICE_DOWN = "service_down"
    DATA_QUALITY = "data_quality"
    MODEL_DEGRADED = "model_degraded"
    FEATURE_DRIFT = "feature_drift"
    RETRAINING_TRIGGERED = "retraining_triggered"
    TASK_FAILED = "task_failed"


@dataclass(frozen=True, slots=True)
class AlertRaised:
    """Something is wrong: ``subject`` says where (a service, a model, a symbol)."""

    reason: AlertReason
    severity: Severity
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    raised_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    alert_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def dedup_key(self) -> str:
        return f"{self.reason}|{self.subject}"

    def text(self) -> str:
        """One short human line (Telegram, logs)."""
        icon = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}[self.severity.value]
        head = f"{icon} [{self.severity.value.upper()}] {self.reason.value} · {self.subject}"
        return f"{head}\n{self.message}"


class AlertSink(Protocol):
    """Where alerts go (Telegram, the database, a list in tests)."""

    def send(self, alert: AlertRaised) -> bool: ...
