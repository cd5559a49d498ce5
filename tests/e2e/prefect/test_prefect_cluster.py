"""Prefect on a real stack: a server on PostgreSQL, two process workers, checkpoints on a loopback S3 server.

The training flow run's process is SIGKILLed mid-training; the rerun of the crashed run (on either worker)
resumes from the newest S3 checkpoint and ends bitwise equal to an uninterrupted run. A cancelled run (SIGTERM from its worker) stops with a loadable checkpoint. Every process is stopped by PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import torch
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelling, Scheduled
from prefect_processes import ProcessGroup, wait_until
from scratch_database import scratch_database

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
POOL = "carbon-e2e-cluster"
BUCKET = "carbon-e2e-prefect"
S3_KEY = "testing"  # moto takes any key; s3fs in the flow runs reads it from the environment


def ports(count: int) -> list[int]:
    """Free loopback ports (each socket is closed again before the server that takes the port starts)."""
    sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    found = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return found


@dataclass
class Stack:
    api: str
    env: dict[str, str]
    processes: ProcessGroup
    s3: Any
    deployment_id: uuid.UUID

    def client(self) -> SyncPrefectClient:
        return SyncPrefectClient(self.api)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def checkpoint_steps(s3: Any, prefix: str = "checkpoints/") -> list[int]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    names = [Path(o["Key"]).name for o in listed]
    return sorted(int(n[11:21]) for n in names if n.startswith("checkpoint-") and n.endswith(".pt"))


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """The server's PostgreSQL database, dropped after the stack has stopped."""
    with scratch_database() as name:
        yield name


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Stack]:
    import boto3

    home = tmp_path_factory.mktemp("prefect-cluster")
    api_port, s3_port = ports(2)
    api, endpoint = f"http://127.0.0.1:{api_port}/api", f"http://127.0.0.1:{s3_port}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    processes = ProcessGroup(home)
    try:
        processes.start(
            "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env=env, cwd=home
        )
        processes.start(
            "server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(api_port)],
            env=env, cwd=home,
        )  # fmt: skip
        wait_until(lambda: healthy(endpoint), timeout=60, what="the S3 server")
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=S3_KEY, aws_secret_access_key=S3_KEY,
        )  # fmt: skip
        s3.create_bucket(Bucket=BUCKET)
        wait_until(lambda: healthy(f"{api}/health"), timeout=120, what=f"prefect server\n{processes.logs()}")
        subprocess.run(
            [str(BIN / "prefect"), "work-pool", "create", POOL, "--type", "process"],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        job = f"{HERE / 'cluster_job.py'}:slow_classifier"
        parameters = {"job": job, "strategy": "none", "checkpoint_dir": f"s3://{BUCKET}/checkpoints",
                      "checkpoint_every_steps": 10, "within": "24h"}  # fmt: skip
        deploy = (
            "import json, sys\n"
            "from carbon_flows.training import carbon_aware_training\n"
            "flow = carbon_aware_training.from_source(source=sys.argv[1], entrypoint='carbon_training.py:carbon_aware_training')\n"
            "print(flow.deploy(name='cluster', work_pool_name=sys.argv[2], build=False, push=False,"
            " print_next_steps=False, parameters=json.loads(sys.argv[3])))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", deploy, str(REPO / "flows"), POOL, json.dumps(parameters)],
            env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        deployment_id = uuid.UUID(done.stdout.strip().splitlines()[-1])
        for name in ("worker-1", "worker-2"):
            processes.start(
                name, [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--name", name],
                env=env, cwd=home,
            )  # fmt: skip
        yield Stack(api, env, processes, s3, deployment_id)
    finally:
        survivors = processes.stop()
        assert survivors == [], f"processes still running after stop: {survivors}"


def runs_somewhere(processes: ProcessGroup, run_id: uuid.UUID) -> bool:
    try:
        return bool(flow_run_process(processes, run_id))
    except LookupError:
        return False


def flow_run_process(processes: ProcessGroup, run_id: uuid.UUID) -> tuple[str, psutil.Process]:
    """The worker running `run_id` and the flow-run process it started (its command line names the run)."""
    for name in ("worker-1", "worker-2"):
        proc = next((p for p in processes.started if name in str(p.args)), None)
        if proc is None or proc.poll() is not None:
            continue
        for child in psutil.Process(proc.pid).children(recursive=True):
            with_env = child.environ() if child.is_running() else {}
            if with_env.get("PREFECT__FLOW_RUN_ID") == str(run_id):
                return name, child
    raise LookupError(f"no process runs flow run {run_id}")


def final(
    client: SyncPrefectClient, run_id: uuid.UUID, processes: ProcessGroup, timeout: float = 150
) -> FlowRun:
    holder: dict[str, FlowRun] = {}

    def done() -> bool:
        holder["run"] = client.read_flow_run(run_id)
        processes.remember_descendants()
        state = holder["run"].state
        return state is not None and state.is_final()

    wait_until(done, timeout=timeout, what=f"flow run {run_id} to end\n{processes.logs()}")
    return holder["run"]


def rerun_crashed_run(client: SyncPrefectClient, run_id: uuid.UUID, processes: ProcessGroup) -> None:
    """Schedule the crashed run again, until it runs: the worker may report the old crash once more late.

    Before scheduling it again, wait until no process runs it: a rerun already started when that late
    report came would otherwise run beside the next one (two processes, one staging folder).
    """
    holder: dict[str, Any] = {}

    def moved() -> bool:
        holder["state"] = client.read_flow_run(run_id).state
        return holder["state"] is not None and (holder["state"].is_running() or holder["state"].is_crashed())

    for _ in range(5):
        accepted: Any = client.set_flow_run_state(run_id, Scheduled(), force=True)
        assert accepted.status.value == "ACCEPT", accepted
        wait_until(moved, timeout=60, what=f"the rerun of {run_id} to start")
        if holder["state"].is_running():
            return
        wait_until(
            lambda: not runs_somewhere(processes, run_id), timeout=120, what=f"{run_id}'s processes to end"
        )
        state = client.read_flow_run(run_id).state
        if state is not None and (state.is_running() or state.is_completed()):
            return
    raise AssertionError(f"flow run {run_id} never ran again")


def test_a_killed_flow_run_resumes_on_the_other_worker_and_cancelling_checkpoints(stack: Stack) -> None:
    from carbon_sensors.emissions import read_jsonl
    from carbon_sensors.power import EstimateMeter, PowerMonitor
    from carbon_sensors.training import TrainingRunner, load_checkpoint

    sys.path.insert(0, str(HERE))
    from cluster_job import STEPS, slow_classifier

    with stack.client() as client:
        run = client.create_flow_run_from_deployment(stack.deployment_id)
        wait_until(lambda: (checkpoint_steps(stack.s3) or [0])[-1] >= 30, timeout=150,
                   what=f"training to checkpoint\n{stack.processes.logs()}")  # fmt: skip
        _, process = flow_run_process(stack.processes, run.id)
        process.send_signal(signal.SIGKILL)  # the flow run dies with no chance to clean up
        killed_at = checkpoint_steps(stack.s3)[-1]
        assert killed_at < STEPS
        crashed = final(client, run.id, stack.processes)
        assert crashed.state is not None and crashed.state.is_crashed(), crashed.state

        rerun_crashed_run(client, run.id, stack.processes)
        rerun = final(client, run.id, stack.processes)
        assert rerun.state is not None and rerun.state.is_completed(), (
            f"{rerun.state.message if rerun.state else None}\n{stack.processes.logs()}"
        )
        resumed: list[str] = []

        def resume_logged() -> bool:  # run logs are sent in batches: they may land after the final state
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
            resumed[:] = [m.message for m in logs if "resumed from the checkpoint at step" in m.message]
            return bool(resumed)

        wait_until(
            resume_logged, timeout=30, what=f"the rerun's resume in its logs\n{stack.processes.logs()}"
        )
        assert int(resumed[-1].rsplit(" ", 1)[-1]) >= killed_at > 0

        listed = stack.s3.list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/")["Contents"]
        final_key = next(o["Key"] for o in listed if o["Key"].endswith(f"checkpoint-{STEPS:010d}.pt"))
        local = Path(stack.processes.log_dir) / "final.pt"
        stack.s3.download_file(BUCKET, final_key, str(local))
        job = slow_classifier(step_seconds=0.0)
        TrainingRunner(job, checkpoint_dir=local.parent / "straight",
                       monitor=PowerMonitor([EstimateMeter()], start=False)).run()  # fmt: skip
        _, state = load_checkpoint(local)
        for name, tensor in job.model.state_dict().items():
            assert torch.equal(tensor, state["user"]["model"][name]), name

        # Cancelling: the worker SIGTERMs the run, which checkpoints first.
        second = client.create_flow_run_from_deployment(stack.deployment_id)
        prefix = "checkpoints/carbon-aware-training/"
        wait_until(lambda: runs_somewhere(stack.processes, second.id), timeout=150, what="the second run")
        before = {o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
        wait_until(
            lambda: {o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]} - before,
            timeout=150, what="the second run's first checkpoint",
        )  # fmt: skip
        client.set_flow_run_state(second.id, Cancelling(), force=True)
        ended = final(client, second.id, stack.processes)
        # Prefect 3.9 names a SIGTERMed process worker run Cancelled or, when the cancel intent arrives late,
        # Crashed ("aborted by a termination signal"); either way the training stopped with a checkpoint.
        assert ended.state is not None and (ended.state.is_cancelled() or ended.state.is_crashed()), (
            ended.state
        )
        mine = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
                if o["Key"] not in before]  # fmt: skip
        newest = sorted(k for k in mine if k.endswith(".pt"))[-1]
        stack.s3.download_file(BUCKET, newest, str(local))
        _, state = load_checkpoint(local)  # loadable
        assert 0 < state["carbon"]["progress"]["steps_done"] < STEPS
        timeline = local.parent / "cancelled.jsonl"
        stack.s3.download_file(BUCKET, newest.rsplit("/", 1)[0] + "/emissions.jsonl", str(timeline))
        assert (
            read_jsonl(timeline).attempts[-1].status == "stopped"
        )  # the SIGTERM checkpoint, not a periodic one
