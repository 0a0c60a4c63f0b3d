"""Frozen settings of monitoring, read from the environment in this one place.

Prefixes: ``CHAINTRADE_MONITOR_`` (monitor, rules, feedback), ``CHAINTRADE_TELEGRAM_`` (bot)
and ``CHAINTRADE_DASHBOARD_`` (web dashboard).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MonitorSettings(BaseSettings):
    """The performance monitor, its anomaly rules and the feedback loop."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRADE_MONITOR_", frozen=True, extra="forbid")

    interval_s: float = Field(default=10.0, gt=0, description="Seconds between two cycles.")
    window_s: float = Field(default=300.0, gt=0, description="Chains looked at per cycle.")
    baseline_cycles: int = Field(default=30, ge=2, description="Rolling baseline length.")
    serving_metrics_url: str | None = Field(
        default=None, description="Serving's /metrics (e.g. http://127.0.0.1:3000/metrics)."
    )
    agent_metrics_url: str | None = Field(default=None, description="The agent's /metrics.")
    metrics_port: int | None = Field(default=None, description="Expose the monitor's gauges.")
    http_timeout_s: float = 2.0
    min_samples: int = Field(default=10, ge=1, description="Fewer samples: no rule fires.")
    latency_spike_factor: float = Field(default=3.0, gt=1.0)
    latency_floor_ms: float = Field(default=5.0, description="Spikes below this are ignored.")
    error_rate_jump: float = Field(default=0.10, gt=0, description="Absolute rise over baseline.")
    missing_chains_after_s: float = Field(default=120.0, gt=0)
    stale_data_after_s: float = Field(default=3 * 3600.0, gt=0)
    prediction_shift_psi: float = Field(default=0.25, gt=0)
    # feedback loop
    min_live_accuracy: float = Field(default=0.45, ge=0, le=1)
    min_profit_factor: float = Field(default=0.8, ge=0)
    drift_psi: float = Field(default=0.25, gt=0)
    min_trades: int = Field(default=5, ge=1)
    retrain_dag_id: str = "chaintrade_training"
    retrain_cooldown_s: float = Field(default=6 * 3600.0, ge=0)
    trigger_retraining: bool = True


class TelegramSettings(BaseSettings):
    """The Telegram bot: alerts out, read-only commands and a guarded /halt in."""

    model_config = SettingsConfigDict(
        env_prefix="CHAINTRADE_TELEGRAM_", frozen=True, extra="forbid"
    )

    token: SecretStr | None = Field(default=None, description="Bot token; never logged.")
    api_url: str = Field(default="https://api.telegram.org", description="Bot API base URL.")
    chat_ids: str = Field(default="", description="Allow-list: comma-separated chat ids.")
    rate_limit_per_min: int = Field(default=20, ge=1)
    dedup_window_s: float = Field(default=600.0, ge=0)
    poll_timeout_s: int = Field(default=25, ge=0, description="getUpdates long-poll seconds.")
    halt_confirm_s: float = Field(default=60.0, gt=0, description="Time to confirm a /halt.")
    kill_file: Path | None = Field(
        default=None, description="The agent's kill file (CHAINTRADE_AGENT_KILL_SWITCH_FILE)."
    )
    http_timeout_s: float = 10.0

    @property
    def allowed_chats(self) -> frozenset[int]:
        return frozenset(int(x) for x in self.chat_ids.replace(" ", "").split(",") if x)

    @property
    def configured(self) -> bool:
        return self.token is not None and bool(self.allowed_chats)


class DashboardSettings(BaseSettings):
    """The web dashboard: address and auth (a bearer token, or basic auth)."""

    model_config = SettingsConfigDict(
        env_prefix="CHAINTRADE_DASHBOARD_", frozen=True, extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = 8050
    token: SecretStr | None = Field(default=None, description="Bearer token or ?token=.")
    username: str = "admin"
    password: SecretStr | None = Field(default=None, description="Basic auth password.")
    agent_state_dir: Path | None = Field(
        default=None, description="The agent's state folder (order journal, protections)."
    )
    refresh_s: int = Field(default=10, ge=0, description="Page auto-refresh; 0 = off.")

    @property
    def auth_configured(self) -> bool:
        return self.token is not None or self.password is not None
