"""Airflow on a real CeleryExecutor stack: training moves between workers and survives a SIGKILLed worker.

The services of docker-compose.yml, started natively with the same settings: PostgreSQL (the machine's, a
fresh database per run), Redis (a dedicated db number), an S3 API (moto's server on 127.0.0.1), and
api-server, scheduler, dag-processor, triggerer and two Celery workers whose local temp folders differ.
The training task pauses (deferred) while worker A serves; it resumes on worker B; B is SIGKILLed with its
task mid-training; the retry on A resumes from the newest S3 checkpoint and ends bitwise equal to an
uninterrupted run. Every process is stopped by its process group, then by PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import torch
from airflow_e2e_support import replay_env

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent
DAG_FILE = "carbon_e2e_cluster_training.py"
DAG_ID = "carbon_e2e_cluster_training"
BUCKET = "carbon-e2e"
REDIS_DB = "13"
STEPS = 400  # 0.05 s each: long enough to kill worker B mid-training on a loaded machine
S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """Every process this test starts, each in its own session, with its log in `logs`."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.seen: dict[int, psutil.Process] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def note_descendants(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(proc.pid)
                for p in [parent, *parent.children(recursive=True)]:
                    self.seen.setdefault(p.pid, p)

    def signal_group(self, name: str, sig: int, wait: float = 30) -> None:
        """Send `sig` to `name`, its process group and every descendant (a task runner leaves the group)."""
        self.note_descendants()
        proc = self.procs.pop(name)
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.send_signal(sig)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-chars:]

    def stop(self) -> list[int]:
        """SIGTERM every group, then SIGKILL what is left, by group and by PID; returns PIDs still alive."""
        self.note_descendants()
        for name in list(self.procs):
            self.signal_group(name, signal.SIGTERM)
        for p in self.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        time.sleep(0.5)
        return [pid for pid, p in self.seen.items() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def wait_for(what: str, probe: Callable[[], Any], limit: float, procs: Processes, every: float = 0.5) -> Any:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        procs.check_alive()
        procs.note_descendants()
        try:
            found = probe()
        except (httpx.HTTPError, OSError):
            found = None
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip


def checkpoint_steps(s3: Any) -> list[int]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/").get("Contents", [])
    names = [Path(o["Key"]).name for o in listed]
    return sorted(int(n[11:21]) for n in names if n.startswith("checkpoint-") and n.endswith(".pt"))


@pytest.fixture
def cluster(
    tmp_path: Path, postgres_url: str
) -> Iterator[tuple[Processes, dict[str, str], httpx.Client, Any]]:
    home, dags, logs = tmp_path / "home", tmp_path / "dags", tmp_path / "logs"
    for folder in (home, dags, logs):
        folder.mkdir()
    shutil.copy(HERE / DAG_FILE, dags)
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", REDIS_DB, "flushdb"], check=True, timeout=30)
    procs = Processes(logs)
    s3_port, api_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    sql = postgres_url
    connection = {"conn_type": "aws", "login": S3_KEYS["AWS_ACCESS_KEY_ID"], "password": S3_KEYS["AWS_SECRET_ACCESS_KEY"],
                  "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sql}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "carbon-e2e-jwt-secret-not-for-production",
        "AIRFLOW__API__SECRET_KEY": "carbon-e2e-secret-key-not-for-production",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_CARBON_S3": json.dumps(connection),
        "CARBON_E2E_CHECKPOINTS": f"s3://carbon_s3@{BUCKET}/checkpoints",
        "CARBON_E2E_GO_FILE": str(tmp_path / "go"),
        "PYTHONWARNINGS": "ignore",
        **S3_KEYS,
    }
    try:
        procs.start("s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env)
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
        )
        s3 = s3_client(endpoint)
        wait_for("the S3 server", lambda: s3.create_bucket(Bucket=BUCKET), 60, procs)
        env.update(replay_env("2023-06-01T00:00Z", speed=1.0, starts_in_seconds=0))
        procs.start(
            "api-server",
            [str(BIN / "airflow"), "api-server", "--port", str(api_port), "--host", "127.0.0.1"],
            env,
        )
        for component in ("scheduler", "dag-processor", "triggerer"):
            procs.start(component, [str(BIN / "airflow"), component], env)
        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}/api/v2", timeout=10) as api:
            yield procs, env, api, s3
    finally:
        survivors = procs.stop()
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-n", REDIS_DB, "flushdb"], timeout=30)
        assert survivors == [], f"processes still alive after stop: {survivors}"


def start_worker(procs: Processes, env: dict[str, str], name: str, scratch: Path) -> None:
    """A Celery worker whose temp folder (where local checkpoints are staged) is its own."""
    scratch.mkdir(exist_ok=True)
    args = [str(BIN / "airflow"), "celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1",
            "--without-mingle", "--without-gossip"]  # fmt: skip
    procs.start(name, args, {**env, "TMPDIR": str(scratch)})


def test_training_moves_between_celery_workers_and_survives_a_sigkill(
    cluster: tuple[Processes, dict[str, str], httpx.Client, Any], tmp_path: Path
) -> None:
    procs, env, api, s3 = cluster
    start_worker(procs, env, "worker-a", tmp_path / "worker-a")
    wait_for("the api-server", lambda: api.get("/version").status_code == 200, 120, procs)
    wait_for(f"the DAG {DAG_ID}", lambda: api.get(f"/dags/{DAG_ID}").status_code == 200, 120, procs)
    created = api.post(f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})
    assert created.status_code == 200, created.text
    ti_url = f"/dags/{DAG_ID}/dagRuns/{created.json()['dag_run_id']}/taskInstances/train"

    def task() -> dict[str, Any]:
        return dict(api.get(ti_url).json())

    # 1. Worker A trains a step, pauses by checkpoint (published to S3) and defers: no worker held.
    wait_for("the training to defer", lambda: task()["state"] == "deferred", 180, procs, every=0.3)
    paused_at = checkpoint_steps(s3)
    assert paused_at and paused_at[-1] >= 1
    procs.signal_group("worker-a", signal.SIGTERM)  # A leaves; only B can pick the task up
    start_worker(procs, env, "worker-b", tmp_path / "worker-b")
    (tmp_path / "go").touch()

    # 2. B resumes from A's S3 checkpoint and trains on; it dies with its task mid-training.
    wait_for(
        "worker B to train on", lambda: (checkpoint_steps(s3) or [0])[-1] >= paused_at[-1] + 30, 180, procs
    )
    staged_b = list((tmp_path / "worker-b").rglob("checkpoint-*.pt"))
    assert staged_b and not any(
        int(p.name[11:21]) > paused_at[-1] for p in (tmp_path / "worker-a").rglob("checkpoint-*.pt")
    )
    procs.signal_group("worker-b", signal.SIGKILL)
    killed_at = checkpoint_steps(s3)[-1]
    assert killed_at < STEPS, "the training finished before the worker was killed"

    # 3. The scheduler sees the task's heartbeat stop; the retry on A resumes from the newest checkpoint.
    start_worker(procs, env, "worker-a", tmp_path / "worker-a")
    run_url = ti_url.rsplit("/taskInstances", 1)[0]
    state = wait_for(
        f"the run to finish (the task: {task()})",
        lambda: (s := api.get(run_url).json()["state"]) in ("success", "failed") and s,
        240,
        procs,
    )
    assert state == "success", procs.tail("worker-a")
    assert task()["try_number"] == 2
    entry = api.get(f"{ti_url}/xcomEntries/return_value", params={"deserialize": True})
    assert entry.status_code == 200, entry.text
    value = entry.json()["value"]
    result = json.loads(value) if isinstance(value, str) else value
    assert result["status"] == "completed" and result["steps_done"] == STEPS
    assert killed_at <= result["started_at_step"] < STEPS  # the retry resumed, then trained the rest
    assert result["checkpoint_path"].startswith(f"s3://carbon_s3@{BUCKET}/checkpoints/{DAG_ID}/")
    assert result["timeline_path"].endswith("/train/emissions.jsonl")
    report = result["report"]
    assert report["attempts"] >= 3 and report["crashed_attempts"] >= 1  # start, resume, crashed, retry

    # 4. Bitwise equal to the same job trained without pause, move or crash.
    key = result["checkpoint_path"].split(f"{BUCKET}/", 1)[1]
    final = tmp_path / "final.pt"
    s3.download_file(BUCKET, key, str(final))
    from carbon_sensors.power import EstimateMeter, PowerMonitor
    from carbon_sensors.training import TrainingRunner, load_checkpoint

    job = dag_job()
    TrainingRunner(
        job, checkpoint_dir=tmp_path / "straight", monitor=PowerMonitor([EstimateMeter()], start=False)
    ).run()
    _, state_dict = load_checkpoint(final)
    for name, tensor in job.model.state_dict().items():
        assert torch.equal(tensor, state_dict["user"]["model"][name]), name


def dag_job() -> Any:
    """The DAG's own job, built in this process, without its slow steps (sleeping changes no parameter)."""
    spec = importlib.util.spec_from_file_location("carbon_e2e_cluster_dag", HERE / DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.slow_training(step_seconds=0.0)
