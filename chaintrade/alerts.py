"""Alerts for the batch side: ``notify_failure`` is the Airflow ``on_failure_callback``.

It sends through the Telegram sink when ``CHAINTRADE_TELEGRAM_TOKEN`` and
``CHAINTRADE_TELEGRAM_CHAT_IDS`` are set, and logs the alert otherwise; it never raises (a
failing callback must not hide the task's own failure).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chaintrade.monitoring.events import AlertRaised, AlertReason, Severity

log = logging.getLogger(__name__)


def failure_alert(context: Mapping[str, Any]) -> AlertRaised:
    """The alert for a failed Airflow task, from its callback context."""
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = context.get("run_id") or getattr(ti, "run_id", "?")
    exc = context.get("exception")
    why = f"{type(exc).__name__}: {exc}" if exc is not None else "no exception in the context"
    return AlertRaised(
        AlertReason.TASK_FAILED,
        Severity.CRITICAL,
        f"{dag_id}.{task_id}",
        f"run {run_id} failed: {why}"[:1000],
        details={"dag_id": dag_id, "task_id": task_id, "run_id": str(run_id)},
    )


def notify_failure(context: Mapping[str, Any]) -> None:
    """Airflow failure callback: Telegram when configured, else a log line."""
    try:
        alert = failure_alert(context)
    except Exception:
        log.exception("could not describe the failed task")
        return
    try:
        from chaintrade.monitoring.settings import TelegramSettings
        from chaintrade.monitoring.telegram import TelegramAlertSink

        settings = TelegramSettings()
        if settings.configured:
            sink = TelegramAlertSink(settings)
            try:
                if sink.send(alert):
                    return
            finally:
                sink.api.close()
    except Exception:
        log.exception("telegram alert for %s not sent", alert.subject)
    log.error("%s", alert.text())
