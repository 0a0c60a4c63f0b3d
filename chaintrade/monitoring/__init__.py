"""Monitoring: the performance monitor, alert rules and sinks (Telegram), the web dashboard,
the feedback loop (live model metrics, drift, retraining) and the run report.

Nothing heavy is imported here; each module imports what it needs.
"""
