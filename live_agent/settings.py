"""Frozen agent settings, read from the environment (prefix ``CHAINTRADE_AGENT_``)."""

from __future__ import annotations

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
    halted: bool = Field(default=False, description="Kill switch: no new exposure.")

    @field_validator("serving_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _bands_ordered(self) -> AgentSettings:
        if not (self.sell_threshold <= -self.close_band and self.close_band <= self.buy_threshold):
            raise ValueError("need sell_threshold <= -close_band and close_band <= buy_threshold")
        return self

    @property
    def mt5_timeframe(self) -> Timeframe:
        return Timeframe[self.timeframe]
