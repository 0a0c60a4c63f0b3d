"""Frozen settings, read from the environment (prefix ``CHAINTRADE_``) in this one place."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    """Platform settings. Every field can be set as ``CHAINTRADE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CHAINTRADE_", frozen=True, extra="forbid")

    home: Path = Field(default=Path("var"), description="All local state lives here.")
    db_url: str | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB URL; unset starts an embedded PostgreSQL in home.",
    )
    redis_url: str | None = None
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; unset uses SQLite under home."
    )
    spark_master: str = "local[2]"
    feast_env: Literal["embedded", "production"] = Field(
        default="embedded", description="embedded: DuckDB + SQLite; production: Spark + Redis."
    )
    feature_repo: Path = PROJECT_ROOT / "feature_repo"
    model_name: str = "chaintrade-direction"
    serving_url: str = "http://127.0.0.1:3000"
    serving_token: SecretStr | None = None
    serving_timeout_s: float = 2.0
    label_horizon_bars: int = 1
    airflow_url: str = Field(
        default="http://127.0.0.1:8080", description="Airflow API server, for REST triggers."
    )
    airflow_username: str = "admin"
    airflow_password: SecretStr | None = Field(
        default=None, description="Unset: read var/airflow's generated simple-auth password file."
    )
    chain_journal_fsync: bool = Field(
        default=True,
        description=(
            "Chain writer: fsync each batch's journal block before sending it (survives an OS "
            "crash or power loss); false only writes it to the OS (survives kill -9, not an "
            "OS crash while the batch is in flight). See chaintrade.chain_store."
        ),
    )

    @field_validator("home", "feature_repo")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def offline_dir(self) -> Path:
        return self.home / "offline"

    @property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @property
    def data_docs_dir(self) -> Path:
        return self.home / "data_docs"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
