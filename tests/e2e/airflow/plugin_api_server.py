"""A real Airflow api-server for the plugin's auth tests: its own home and SQLite database, stopped by PID.

`served(home, env)` migrates the database, runs any set-up commands (e.g. creating a FAB user), starts
`airflow api-server` on a free loopback port, waits for its health endpoint and yields its base URL; on exit it
stops the process group, then every process it saw, by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psutil

BIN = Path(sys.executable).parent
PLUGIN_ROUTES = [
    "/carbon/",
    "/carbon/api/forecast?zone=GB",
    "/carbon/api/plan?zone=GB&deadline=2030-01-01T00:00Z",
]
JWT_SECRET = "carbon-plugin-auth-e2e-jwt-secret-not-for-production-0123456789abcdef0123456789abcdef"


def airflow_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of every command: this home, no examples, test-only secrets, plus `settings`."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        "AIRFLOW__API__SECRET_KEY": "carbon-plugin-auth-e2e-secret-key-not-for-production",
        "PYTHONWARNINGS": "ignore",
        **settings,
    }


@contextlib.contextmanager
def served(home: Path, env: dict[str, str], setup: Sequence[Sequence[str]] = ()) -> Iterator[str]:
    for command in (["db", "migrate"], *setup):
        subprocess.run(
            [str(BIN / "airflow"), *command], env=env, check=True, capture_output=True, timeout=300
        )
    port = _free_port()
    log = home / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(BIN / "airflow"),
                "api-server",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                "1",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base, process, log)
        yield base
    finally:
        survivors = _stop(process)
        assert survivors == [], f"api-server processes still alive: {survivors}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"api-server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"api-server not up after 120 s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> list[int]:
    """SIGTERM the process group, then SIGKILL it and every child seen; returns PIDs still alive."""
    try:
        pids = {process.pid, *(c.pid for c in psutil.Process(process.pid).children(recursive=True))}
    except psutil.NoSuchProcess:
        pids = {process.pid}
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    time.sleep(0.3)
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def login(base: str, username: str, password: str) -> str:
    """A JWT from the auth manager's own `POST /auth/token` (what Airflow's login page sets as `_token`)."""
    answer = httpx.post(f"{base}/auth/token", json={"username": username, "password": password}, timeout=60)
    assert answer.status_code == 201, answer.text
    token: str = answer.json()["access_token"]
    return token
