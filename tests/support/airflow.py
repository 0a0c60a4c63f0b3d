"""A real Airflow for tests: api-server, scheduler and dag-processor as separate processes.

    from tests.support.airflow import running_airflow

    with running_airflow(tmp_path, {"CHAINTRADE_HOME": str(tmp_path / "var")}) as airflow:
        airflow.wait_for_dags("chaintrade_training")
        client = airflow.client()                      # chaintrade.airflow_api.AirflowClient
        run_id = client.trigger("chaintrade_training", {"reason": "test"})
        assert client.wait("chaintrade_training", run_id, timeout_s=300) == "success"

State lives in ``tmp_path/airflow`` (SQLite metadata database unless ``extra_env`` sets
``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``), the API listens on a free loopback port, the simple
auth manager knows one admin user with a known password, DAGs come from the repository's
``dags/`` (override with ``AIRFLOW__CORE__DAGS_FOLDER``) and are unpaused at creation. Each
process runs in its own process group; on exit every group is terminated (then killed) and
checked to be empty, so executor workers and task processes go with them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chaintrade.airflow_api import AirflowClient
from chaintrade.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
USERNAME = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AirflowServer:
    """A running Airflow: where it listens, who may log in, its home and its processes."""

    url: str
    username: str
    password: str
    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def client(self) -> AirflowClient:
        """A REST client logged in as the admin user."""
        return AirflowClient(self.url, self.username, self.password, timeout_s=30.0)

    def log(self, component: str) -> str:
        """The output of one component so far (``api-server``, ``scheduler``, ...)."""
        path = self.home / "logs" / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs_tail(self, chars: int = 3000) -> str:
        """The end of every component's output, for assertion messages."""
        return "\n".join(f"--- {c}\n{self.log(c)[-chars:]}" for c in self.processes)

    def check_alive(self) -> None:
        """Raise with the logs if a component exited."""
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"airflow {name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}"
                )

    def wait_for_dags(self, *dag_ids: str, timeout_s: float = 180.0) -> None:
        """Wait until the dag-processor has parsed ``dag_ids`` and the API lists them."""
        deadline = time.monotonic() + timeout_s
        missing = set(dag_ids)
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            token = self.client().token()
            while missing:
                self.check_alive()
                for dag_id in sorted(missing):
                    got = http.get(
                        f"/api/v2/dags/{dag_id}", headers={"Authorization": f"Bearer {token}"}
                    )
                    if got.status_code == 200:
                        missing.discard(dag_id)
                if missing and time.monotonic() > deadline:
                    errors = http.get(
                        "/api/v2/importErrors", headers={"Authorization": f"Bearer {token}"}
                    ).text
                    raise TimeoutError(
                        f"DAGs {sorted(missing)} not parsed after {timeout_s} s; import errors: "
                        f"{errors}\n{self.logs_tail()}"
                    )
                if missing:
                    time.sleep(1.0)


def airflow_env(home: Path, port: int, password_file: Path) -> dict[str, str]:
    """The environment every component shares (same secrets, same database, same URLs)."""
    url = f"http://127.0.0.1:{port}"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "3600",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
        ),
    }


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM the process group, SIGKILL what is left, and make sure nothing of it survives."""
    pgid = proc.pid  # started with start_new_session: its pid is the group id
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_healthy(server: AirflowServer, timeout_s: float) -> None:
    """Until the API answers and reports the metadata database and the scheduler healthy."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            health = httpx.get(f"{server.url}/api/v2/monitor/health", timeout=5.0)
            last = health.text
            body = health.json() if health.status_code == 200 else {}
            if all(
                body.get(part, {}).get("status") == "healthy"
                for part in ("metadatabase", "scheduler")
            ):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"Airflow not healthy after {timeout_s} s ({last})\n{server.logs_tail()}")


@contextmanager
def running_airflow(
    tmp_path: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    ready_timeout_s: float = 240.0,
) -> Iterator[AirflowServer]:
    """Start Airflow under ``tmp_path/airflow``; yield it healthy; stop every process on exit.

    ``extra_env`` reaches every component and every task (``CHAINTRADE_*`` settings, another
    ``AIRFLOW__CORE__DAGS_FOLDER``, a PostgreSQL ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` such
    as ``postgresql+psycopg://postgres@127.0.0.1:5432/<db>``, ...).
    """
    home = tmp_path / "airflow"
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    password_file = home / "passwords.json"
    password_file.write_text(f'{{"{USERNAME}": "{password}"}}\n')
    port = _free_port()
    env = {**os.environ, **airflow_env(home, port, password_file), **(extra_env or {})}
    server = AirflowServer(f"http://127.0.0.1:{port}", USERNAME, password, home, env)
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if migrate.returncode != 0:
        raise RuntimeError(
            f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
        )
    try:
        for component in COMPONENTS:
            args = [str(BIN / "airflow"), component]
            if component == "api-server":
                args += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
            with (logs / f"{component}.log").open("wb") as out:
                server.processes[component] = subprocess.Popen(
                    args,
                    env=env,
                    cwd=home,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        _wait_healthy(server, ready_timeout_s)
        yield server
    finally:
        for proc in server.processes.values():
            _stop_group(proc)
