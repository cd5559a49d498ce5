"""Headless Chromium screenshots of the charts where people look: the Prefect run with its artifacts, the
Airflow Carbon intensity page and the runs view (each in the Airflow UI and on its own).

Everything runs on loopback from a temporary home, on the embedded real grid data replayed as live, and every
process started is stopped by PID. Not part of `make test`: it takes a few minutes.

    .venv-prefect/bin/python scripts/screenshots.py prefect OUT_DIR
    .venv-airflow/bin/python scripts/screenshots.py airflow OUT_DIR

Needs `chromium` on PATH (Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pandas as pd
from websockets.sync.client import ClientConnection, connect

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests" / "e2e" / "prefect"))  # ProcessGroup: start and stop by PID

from prefect_processes import ProcessGroup  # type: ignore[import-not-found]  # noqa: E402

WIDTH, HEIGHT = 1400, 1000


# --- processes --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[ProcessGroup]:
    """Background processes, each in its own session; all stopped (with their children) on the way out."""
    group = ProcessGroup(log_dir)
    try:
        yield group
    finally:
        group.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_checked(args: Sequence[str], env: dict[str, str], timeout: float = 600) -> str:
    """Run a command to its end; its stdout, or its output's tail in the error when it fails."""
    done = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(args[:3])} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done.stdout


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


# --- a headless browser over the DevTools protocol ----------------------------------------------------------


@contextlib.contextmanager
def browser(group: ProcessGroup, profile: Path) -> Iterator[Browser]:
    """Chromium, headless, with one page to drive over the DevTools protocol."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not on PATH (Debian: apt-get install -y chromium)")
    port = free_port()
    group.start(
        "chromium",
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}", f"--window-size={WIDTH},{HEIGHT}",
         "about:blank"],
        env=dict(os.environ), cwd=REPO,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{endpoint}/json/version").status_code == 200, 30, "chromium")
    target = httpx.put(f"{endpoint}/json/new?about:blank").json()
    with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as socket:
        yield Browser(socket)


class Browser:
    """One page of a headless Chromium: set a cookie, open a URL, wait, screenshot."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket, self.ids = socket, 0
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        self.socket.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.ids:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def cookie(self, url: str, name: str, value: str) -> None:
        self.call("Network.setCookie", url=url, name=name, value=value)

    def shoot(
        self,
        url: str,
        path: Path,
        settle_seconds: float = 6.0,
        full_page: bool = False,
        click: str | None = None,
    ) -> Path:
        """Open `url`, let its scripts and frames load, click the control labelled `click` (a tab), save a PNG
        of the window (or the whole page)."""
        self.call("Page.navigate", url=url)
        time.sleep(settle_seconds)
        if click is not None:
            found = self.call("Runtime.evaluate", returnByValue=True, expression=(
                "(() => { const e = [...document.querySelectorAll('*')].find(e => !e.children.length"
                f" && e.textContent.trim() === {json.dumps(click)}); if (e) e.click(); return !!e; }})()"
            ))  # fmt: skip
            if not found.get("result", {}).get("value"):
                raise RuntimeError(f"no control labelled {click!r} on {url}")
            time.sleep(settle_seconds / 2)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=full_page)
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path} ({url})")
        return path


# --- Prefect ----------------------------------------------------------------------------------------------


def prefect_screenshots(out: Path, home: Path) -> None:
    """A real `prefect server`; the example training flow pauses through a dirty night in process and
    finishes in the clean morning; then its run page (Artifacts tab) and its report artifact."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
    }
    with processes(home) as group:
        server = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        group.start("prefect-server", server, env=env, cwd=REPO)
        wait_until(lambda: httpx.get(f"{api}/health").status_code == 200, 120, "prefect server")
        printed = run_checked([sys.executable, "-c", PREFECT_RUN, str(home / "checkpoints")], env)
        ids = json.loads(printed.strip().splitlines()[-1])
        ui = f"http://127.0.0.1:{port}"
        with browser(group, home / "chromium") as page:
            run_page = f"{ui}/runs/flow-run/{ids['flow_run']}"
            page.shoot(run_page, out / "prefect-run-artifacts.png", 10, click="Artifacts")
            page.shoot(
                f"{ui}/artifacts/artifact/{ids['report']}", out / "prefect-report-artifact.png", 10, True
            )
            page.shoot(f"{ui}/artifacts/artifact/{ids['epochs']}", out / "prefect-epochs-artifact.png", 10)


# Run in a child process so the flow's engine, its logs and its API client use the server above.
PREFECT_RUN = """
import json, sys
from datetime import UTC, datetime
import pandas as pd
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from carbon_flows.training import carbon_aware_training
from carbon_sensors.replay import Replay
import os
# DE on 2023-06-02: above 250 gCO2eq/kWh until 07:00, below 200 from 08:00; half a grid hour per wall second,
# 08:00 in 30 s (earlier hours until then): a slow flow start-up must not eat the dirty night.
wall_start = pd.Timestamp(datetime.now(UTC)) + pd.Timedelta(seconds=30)
os.environ.update(Replay(pd.Timestamp("2023-06-02T08:00Z"), wall_start, 1800.0).to_env())
state = carbon_aware_training(
    job="flows/carbon_training.py:tiny_regression_job", zone="DE", checkpoint_dir=sys.argv[1],
    strategy="threshold", pause_above=250.0, resume_below=200.0, max_pause="12h", strategy_options={"recheck": "1h"},
    deadline="2023-06-02T23:00Z", max_in_process_pause="1h", decision_refresh_seconds=0.0, resume_overhead="1s",
    artifact_prefix="carbon-training", return_state=True,
)
flow_run = state.state_details.flow_run_id
with get_client(sync_client=True) as client:
    found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run])))
ids = {a.key.rsplit("-", 1)[1]: str(a.id) for a in found}
print(json.dumps({"flow_run": str(flow_run), **ids}))
"""


# --- Airflow ----------------------------------------------------------------------------------------------

NIGHTLY = "carbon_nightly_retraining"
ETL = "carbon_batch_etl"


def airflow_env(home: Path, trace_start: str, lead_seconds: float, speed: float) -> dict[str, str]:
    """The demo's environment (temporary home, example DAGs, fast polls) with a login and this replay."""
    from demo_airflow import demo_env  # scripts/ is on sys.path when this runs as a script

    from carbon_sensors.replay import Replay

    wall = pd.Timestamp.now("UTC") + pd.Timedelta(seconds=lead_seconds)
    return {
        **demo_env(home),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "screenshots-only-secret-not-for-production-0123456789abcdef",
        "CARBON_AWARE_EPOCHS": "12",
        **Replay(pd.Timestamp(trace_start), wall, speed).to_env(),
    }


def airflow_screenshots(out: Path, home: Path) -> None:
    """Two runs of the nightly retraining DAG and one of the batch ETL through `airflow dags test` on
    replayed real DE data, then a real api-server: the plugin pages in the Airflow UI and on their own."""
    airflow = str(BIN / "airflow")
    base_env = airflow_env(home, "2023-10-20T12:00Z", 25, 3600)
    run_checked([airflow, "db", "migrate"], base_env)
    for _ in range(2):  # dirty until 12:00, clean until 16:00, dirty until 22:00: one pause each
        env = airflow_env(home, "2023-10-20T12:00Z", 25, 3600)
        run_checked([airflow, "dags", "test", NIGHTLY], env)
    env = airflow_env(home, "2023-10-20T04:00Z", 0, 3600)
    run_checked([airflow, "dags", "test", ETL], env)
    shoot_airflow(out, home)


def shoot_airflow(out: Path, home: Path) -> None:
    """A real api-server on the runs in `home`, logged in as the simple auth manager's admin."""
    airflow = str(BIN / "airflow")
    env = airflow_env(home, "2023-10-20T04:00Z", 0, 3600)
    nightly_run, etl_run = latest_run(env, NIGHTLY), latest_run(env, ETL)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server_env = {**airflow_env(home, "2023-10-20T04:00Z", 0, 1), "AIRFLOW__API__BASE_URL": base}
    with processes(home) as group:
        server = [airflow, "api-server", "--port", str(port), "--host", "127.0.0.1"]
        group.start("api-server", server, env=server_env, cwd=REPO)
        wait_until(lambda: httpx.get(f"{base}/api/v2/version").status_code == 200, 180, "airflow api-server")
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}).json()
        window = urlencode(
            {"zone": "DE", "dag_id": ETL, "run_id": etl_run, "task_id": "fit_forecaster_carbon_window"}
        )
        threshold = urlencode({"zone": "DE", "dag_id": NIGHTLY, "run_id": nightly_run})
        nightly = f"dags/{NIGHTLY}/runs/{quote(nightly_run, safe='')}/tasks"
        shots = [  # (page, file, full page)
            ("carbon/?zone=DE", "airflow-intensity-page.png", True),
            ("plugin/carbon-intensity", "airflow-ui-intensity.png", False),
            (f"carbon/run?{window}", "airflow-run-window.png", True),
            (f"carbon/run?{threshold}", "airflow-run-threshold.png", True),
            (f"carbon/runs?dag_id={NIGHTLY}", "airflow-runs-view.png", True),
            (f"dags/{NIGHTLY}/plugin/carbon-runs", "airflow-ui-dag-runs.png", False),
            (f"{nightly}/retrain/plugin/carbon-task-runs", "airflow-ui-task-runs.png", False),
        ]
        with browser(group, home / "chromium") as tab:
            tab.cookie(base, "_token", token["access_token"])
            for path, name, full in shots:  # the UI's own pages load slower than the plugin's
                tab.shoot(f"{base}/{path}", out / name, 8 if path.startswith("carbon") else 14, full)


LATEST_RUN = """
import sys
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
with create_session() as session:
    run = session.query(DagRun).filter(DagRun.dag_id == sys.argv[1]).order_by(DagRun.run_after.desc()).first()
    print(run.run_id)
"""


def latest_run(env: dict[str, str], dag_id: str) -> str:
    """The newest run id of `dag_id`, read from the metadata database in a fresh interpreter."""
    return run_checked([sys.executable, "-c", LATEST_RUN, dag_id], env).strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("prefect", "airflow"))
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs, databases)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"carbon-screenshots-{args.which}-"))
    try:
        (prefect_screenshots if args.which == "prefect" else airflow_screenshots)(args.out, home)
    finally:
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
