"""Frozen agent settings, read from the environment (prefix ``CHAINTRADE_AGENT_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from chaintrade.domain import Timeframe


class AgentSettings(BaseSettings):
    """Settings of the live agent. Every field can be set as ``CHAINTRADE_AGENT_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRADE_AGENT_", frozen=True, extra="forbid")

    serving_url: str = "http://127.0.0.1:3000"
    serving_token: SecretStr | None = None
    timeout_s: float = Field(default=2.0, gt=0, description="Per-attempt HTTP timeout.")
    serving_retries: int = Field(default=2, ge=0, description="Retries after the first attempt.")
    retry_backoff_s: float = Field(default=0.2, ge=0)
    timeframe: str = Field(default="H1", pattern=r"^(M1|M5|M15|M30|H1|H4|D1)$")
    magic: int = Field(default=20_240_601, ge=0)
    lot_size: float = Field(default=0.01, gt=0)
    buy_threshold: float = Field(default=0.7, ge=0, le=1)
    sell_threshold: float = Field(default=-0.7, ge=-1, le=0)
    close_band: float = Field(default=0.3, ge=0, le=1, description="|strength| below closes.")
    min_confidence: float = Field(default=0.0, ge=0, le=1)
    max_positions_per_symbol: int = Field(default=1, ge=0)
    max_positions_total: int = Field(default=5, ge=0)
    max_spread_points: int = Field(default=30, ge=0)
    deviation_points: int = Field(default=10, ge=0)
    requote_retries: int = Field(default=2, ge=0, description="Resends after a requote only.")
    sl_points: int = Field(default=0, ge=0, description="Stop loss distance; 0 = none.")
    tp_points: int = Field(default=0, ge=0, description="Take profit distance; 0 = none.")
    halted: bool = Field(default=False, description="Kill switch: HALTED, no orders at all.")
    state_dir: Path | None = Field(
        default=None, description="Protections, order journal, kill file; None = in memory."
    )
    risk_pct: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description="% equity at risk per trade (ATR sizing); 0 = lot_size.",
    )
    atr_period: int = Field(default=14, ge=1)
    atr_sl_mult: float = Field(default=0.0, ge=0, description="SL = ATR x this; 0 = sl_points.")
    atr_tp_mult: float = Field(default=0.0, ge=0, description="TP = ATR x this; 0 = tp_points.")
    max_volume_per_symbol: float | None = Field(default=None, gt=0)
    max_volume_total: float | None = Field(default=None, gt=0)
    max_notional_per_symbol: float | None = Field(default=None, gt=0)
    max_notional_total: float | None = Field(default=None, gt=0)
    max_orders_per_window: int = Field(default=10, ge=0)
    order_window_s: float = Field(default=60.0, gt=0)
    trading_hours: str = Field(
        default="", description='Server-time windows "07:00-17:00,..."; "" = all.'
    )
    trading_days: tuple[int, ...] = Field(
        default=(), description="Server-time weekday() numbers; () = all."
    )
    server_timezone: str = Field(
        default="UTC",
        description="The broker's server time zone (IANA, e.g. Europe/Nicosia): the trading day "
        "of the daily-loss reset and the trading hours/days follow it.",
    )
    bar_times: Literal["utc", "server"] = Field(
        default="utc",
        description="How the terminal stamps bars: 'server' (MT5: broker wall-clock time as "
        "epoch seconds) is converted to UTC with server_timezone; the simulator stamps UTC.",
    )
    daily_loss_pct: float | None = Field(default=5.0, gt=0, le=100)
    max_drawdown_pct: float | None = Field(default=20.0, gt=0, le=100)
    kill_switch_file: Path | None = Field(
        default=None, description="HALTED while it exists (default: <state_dir>/KILL)."
    )
    pause_s: float = Field(default=300.0, ge=0, description="Pause after market closed etc.")
    collect_ticks: bool = Field(
        default=True,
        description="The live loop (live-agent run) collects, validates and quarantines ticks; "
        "replay never does (its decisions do not read ticks).",
    )
    tick_batch: int = Field(default=100_000, ge=1, description="Most ticks per copy_ticks_from.")
    breaker_failures: int = Field(default=3, ge=1)
    breaker_reset_s: float = Field(default=30.0, ge=0)

    @field_validator("serving_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _bands_ordered(self) -> AgentSettings:
        if not (self.sell_threshold <= -self.close_band and self.close_band <= self.buy_threshold):
            raise ValueError("need sell_threshold <= -close_band and close_band <= buy_threshold")
        return self

    @field_validator("server_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("trading_hours")
    @classmethod
    def _hours_parse(cls, value: str) -> str:
        from live_agent.risk_engine import parse_hours

        parse_hours(value)
        return value

    @property
    def mt5_timeframe(self) -> Timeframe:
        return Timeframe[self.timeframe]
