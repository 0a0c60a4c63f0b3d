"""A small client for Airflow 3's public REST API: JWT token, trigger a DAG run, wait for it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from chaintrade.errors import ConfigError, FatalError, ServiceUnavailable
from chaintrade.settings import Settings

TERMINAL_STATES = frozenset({"success", "failed"})


def _password(settings: Settings) -> str | None:
    if settings.airflow_password is not None:
        return settings.airflow_password.get_secret_value()
    generated = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    if generated.exists():
        users: dict[str, str] = json.loads(generated.read_text())
        return users.get(settings.airflow_username)
    return None


@dataclass
class AirflowClient:
    """Triggers and follows DAG runs through ``/api/v2`` with a token from ``/auth/token``."""

    base_url: str
    username: str
    password: str | None
    timeout_s: float = 10.0
    _token: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AirflowClient:
        return cls(settings.airflow_url.rstrip("/"), settings.airflow_username, _password(settings))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client:
                headers = {"Authorization": f"Bearer {self.token()}"}
                response = client.request(method, path, headers=headers, **kwargs)
                if response.status_code == 401:  # token expired: fetch a new one once
                    self._token = None
                    headers = {"Authorization": f"Bearer {self.token()}"}
                    response = client.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"Airflow at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code >= 500:
            raise ServiceUnavailable(f"Airflow answered {response.status_code}: {response.text}")
        if response.status_code >= 400:
            raise FatalError(
                f"Airflow refused {method} {path} ({response.status_code}): {response.text}",
                reason="airflow_refused",
            )
        return response

    def token(self) -> str:
        """A JWT for the public API (POST with credentials; GET when all users are admins)."""
        if self._token is not None:
            return self._token
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout_s) as client:
                if self.password is None:
                    response = client.get("/auth/token")
                else:
                    response = client.post(
                        "/auth/token", json={"username": self.username, "password": self.password}
                    )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"Airflow at {self.base_url} is unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise ConfigError(
                f"Airflow refused a token for {self.username!r} ({response.status_code}); "
                "set CHAINTRADE_AIRFLOW_USERNAME / CHAINTRADE_AIRFLOW_PASSWORD"
            )
        self._token = str(response.json()["access_token"])
        return self._token

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Queue a run of ``dag_id`` with ``conf`` (its params); returns the run id."""
        body = {"logical_date": None, "conf": conf or {}}
        response = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return str(response.json()["dag_run_id"])

    def unpause(self, dag_id: str) -> None:
        """Let the scheduler run ``dag_id`` (a run triggered on a paused DAG stays queued)."""
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def state(self, dag_id: str, run_id: str) -> str:
        response = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        return str(response.json()["state"])

    def wait(
        self, dag_id: str, run_id: str, *, timeout_s: float = 600.0, poll_s: float = 2.0
    ) -> str:
        """Poll until the run ends; returns ``success`` or ``failed``. An unanswered poll
        (a busy api-server) is retried until the deadline, not raised."""
        deadline = time.monotonic() + timeout_s
        state, last_error = "unknown", ""
        while True:
            try:
                state = self.state(dag_id, run_id)
            except ServiceUnavailable as exc:
                last_error = f" (last poll: {exc})"
            else:
                if state in TERMINAL_STATES:
                    return state
            if time.monotonic() > deadline:
                raise ServiceUnavailable(
                    f"{dag_id} run {run_id} still {state} after {timeout_s} s{last_error}"
                )
            time.sleep(poll_s)
