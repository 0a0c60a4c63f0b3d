"""Serving settings: frozen, read from ``CHAINTRADE_SERVING_*`` in this one place."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServingSettings(BaseSettings):
    """Knobs of the prediction service. Every field can be set as ``CHAINTRADE_SERVING_<NAME>``.

    (``CHAINTRADE_SERVING_TOKEN`` and ``..._URL``/``..._TIMEOUT_S`` belong to the platform
    settings, :class:`chaintrade.settings.Settings`.)
    """

    model_config = SettingsConfigDict(env_prefix="CHAINTRADE_SERVING_", frozen=True, extra="ignore")

    cache_ttl_s: float = Field(default=30.0, ge=0.0, description="Prediction cache TTL.")
    cache_max_entries: int = Field(default=10_000, ge=1)
    max_body_bytes: int = Field(default=16_384, ge=256, description="Larger bodies get 413.")
    reload_interval_s: float = Field(
        default=10.0, ge=0.0, description="How often the champion alias is checked; 0 = never."
    )
    max_feature_age_bars: float = Field(
        default=2.0,
        gt=0.0,
        description="/predict_symbol refuses online features older than this many bars.",
    )
    push_to_feast: bool = Field(
        default=True, description="Keep the Feast online store current from pushed bars."
    )
    feast_push_interval_s: float = Field(
        default=0.25,
        ge=0.0,
        description="Shortest time between two Feast push rounds; rows of a symbol coalesce "
        "meanwhile (the online store keeps only the newest), bounding the writer's CPU.",
    )
    access_log: bool = Field(
        default=False,
        description="BentoML's access log line for every request (off: it costs the hot path "
        "~0.1 ms; errors are logged either way).",
    )
    trace_requests: bool = Field(
        default=False,
        description="OpenTelemetry spans for /predict and /predict_symbol (BentoML's tracing "
        "config, e.g. a sample rate and an exporter, must be set too). Off: those paths skip "
        "the OpenTelemetry middleware, which costs them ~0.5 ms even when nothing is sampled.",
    )
    feast_retry_max_s: float = Field(
        default=5.0, gt=0.0, description="Longest pause between retries of a failed Feast push."
    )


@lru_cache(maxsize=1)
def get_serving_settings() -> ServingSettings:
    return ServingSettings()
