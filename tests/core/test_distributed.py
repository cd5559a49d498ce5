"""Distributed data parallel: 2 gloo ranks on 127.0.0.1 pause together, resume bitwise, count energy once.

One helper process (`ddp_worker.py`) makes both launches for every test here: launch 1 checks the sync and
trains the reference run and the paused run's first attempt; launch 2, in new processes, resumes the paused
run twice. Each rank's fake meter adds known joules per step (its own GPU: 1 J on rank 0, 2 J on rank 1;
its own CPU share: 0.5 J; the host's CPU package: 10 J, seen by both ranks), so the joined energy is exact.
Rank 1 is given a strategy that always pauses: the session must never ask it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from ddp_worker import CPU_J, GPU_J, PACKAGE_J, STEPS
from training_models import START

from carbon_sensors.emissions import read_jsonl
from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.power import ESTIMATE, NVML_ENERGY, RAPL, Measurement
from carbon_sensors.training import carbon_session
from carbon_sensors.training.distributed import (
    RankWindow,
    TorchDistributedSync,
    default_sync,
    device_identity,
    join_windows,
)
from carbon_sensors.training.ranks import LocalSync

pytestmark = pytest.mark.slow
HELPER = Path(__file__).with_name("ddp_worker.py")
HELPER_TIMEOUT_S = 300  # both launches take seconds; a hang is killed by the helper itself after 150 s
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Launches:
    """What each rank of each launch saved, and the shared checkpoint folder root."""

    root: Path
    ranks: dict[tuple[int, int], dict[str, Any]]

    def __call__(self, launch: int, rank: int) -> dict[str, Any]:
        return self.ranks[launch, rank]

    def attempts(self, name: str, rank: int) -> list[dict[str, Any]]:
        return [*self(1, rank)[name], *self(2, rank)[name]]


@pytest.fixture(scope="module")
def launches(tmp_path_factory: pytest.TempPathFactory) -> Launches:
    root = tmp_path_factory.mktemp("ddp")
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), str(root)], cwd=HELPER.parent, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=HELPER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the helper and the ranks it forked
        out, err = proc.communicate()
        pytest.fail(f"the 2-rank launches took over {HELPER_TIMEOUT_S} s:\n{out}\n{err[-3000:]}")
    assert proc.returncode == 0, f"{out}\n{err[-5000:]}"
    assert out.splitlines()[0].startswith("launch 1 ok") and out.splitlines()[1].startswith("launch 2 ok")
    ranks = {
        (launch, rank): torch.load(root / f"launch{launch}-rank{rank}.pt", weights_only=True)
        for launch in (1, 2)
        for rank in (0, 1)
    }
    return Launches(root, ranks)


def joules_by_device(result: dict[str, Any]) -> dict[str, float]:
    kwh: dict[str, float] = result["report"]["energy_kwh_by_device"]
    return {device: value * J_PER_KWH for device, value in kwh.items()}


def bitwise_equal(got: list[torch.Tensor], want: list[torch.Tensor]) -> bool:
    return len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


# the energy the fake meters give over the whole job: each rank's own GPU and CPU, the shared package once
EXPECTED_J = {
    "rank0:cuda:0": GPU_J[0] * STEPS,
    "rank1:cuda:0": GPU_J[1] * STEPS,
    "rank0:cpu": CPU_J * STEPS,
    "rank1:cpu": CPU_J * STEPS,
    "rank0:cpu:package-0": PACKAGE_J * STEPS,
}


def test_sync_broadcasts_the_writers_values_and_joins_each_ranks_window_once(launches: Launches) -> None:
    for rank in (0, 1):
        checks = launches(1, rank)["checks"]
        assert checks["agreed"] == [1, -7, 2**62]  # rank 1 passed [11, -7, 2**62]: it gets the writer's
        assert checks["agree_seconds"] < 0.05
    checks = launches(1, 0)["checks"]
    assert checks["joined"] == {
        "rank0:cuda:0": 1.0, "rank0:cpu": 0.5, "rank0:cpu:package-0": 10.0, "rank0:ram": 3.0,
        "rank1:cuda:0": 2.0, "rank1:cpu": 0.5,
    }  # fmt: skip
    assert checks["joined_sources"]["rank1:cuda:0"] == NVML_ENERGY
    assert checks["joined_seconds"] == 2.0
    # ranks on hosts of their own each count their host's package and RAM
    assert checks["apart"]["rank1:cpu:package-0"] == 10.0 and checks["apart"]["rank1:ram"] == 3.0
    assert launches(1, 1)["checks"]["joined"]["cuda:0"] == 2.0  # a non-writer gets its own window back
    assert launches(1, 1)["checks"]["alone"] == {
        "rank1:cuda:0": 2.0, "rank1:cpu": 0.5, "rank1:cpu:package-0": 10.0, "rank1:ram": 3.0,
    }  # fmt: skip


def test_uninterrupted_two_rank_run_trains_in_step(launches: Launches) -> None:
    ref = [launches(1, rank)["reference"] for rank in (0, 1)]
    for done in ref:
        assert (done["result"]["status"], done["at"], done["result"]["epoch"]) == ("completed", STEPS, 3)
    assert bitwise_equal(ref[0]["params"], ref[1]["params"])  # DDP keeps the replicas equal
    folder = launches.root / "ref"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LATEST", "checkpoint-0000000020.pt", "checkpoint-0000000024.pt", "emissions.jsonl",
    ]  # fmt: skip
    assert read_jsonl(folder / "emissions.jsonl").report().to_dict() == ref[0]["result"]["report"]


def test_both_ranks_pause_at_the_same_steps_and_fresh_launches_resume_bitwise(launches: Launches) -> None:
    expected = launches(1, 0)["reference"]["params"]
    for rank in (0, 1):
        attempts = launches.attempts("paused", rank)
        seen = [(a["result"]["status"], a["at"], a["result"]["started_at_step"]) for a in attempts]
        assert seen == [("paused", 5, 0), ("paused", 11, 5), ("completed", STEPS, 11)]
        assert bitwise_equal(attempts[-1]["params"], expected)
    for writer, other in zip(launches.attempts("paused", 0), launches.attempts("paused", 1), strict=True):
        assert writer["result"]["paused_until"] == other["result"]["paused_until"]  # the writer's decision
    assert (
        launches.attempts("paused", 0)[0]["result"]["paused_until"]
        == (START + pd.Timedelta(hours=1)).isoformat()
    )
    final = launches.attempts("paused", 0)[-1]["result"]
    report = final["report"]
    assert (report["pauses"], report["attempts"]) == (2, 3)
    assert report["paused_seconds"] == 2 * 24 * 3600  # resumed a day after each pause
    timeline = launches.root / "paused" / "emissions.jsonl"
    assert read_jsonl(timeline).report().to_dict() == report  # one writer: one consistent timeline


def test_the_report_counts_each_ranks_energy_once(launches: Launches) -> None:
    uninterrupted = launches(1, 0)["reference"]["result"]
    resumed = launches.attempts("paused", 0)[-1]["result"]  # summed over the three attempts
    for result in (uninterrupted, resumed):
        assert joules_by_device(result) == pytest.approx(EXPECTED_J)
        total = result["report"]["energy_kwh"] * J_PER_KWH
        assert total == pytest.approx(sum(EXPECTED_J.values()))  # 336 J: not times the world size
        assert sorted(result["report"]["power_sources"]) == sorted({ESTIMATE, NVML_ENERGY, RAPL})


def test_plain_loop_carbon_session_pauses_and_resumes_under_two_ranks(launches: Launches) -> None:
    expected = launches(1, 0)["loop_reference"]["params"]
    for rank in (0, 1):
        attempts = launches.attempts("loop", rank)
        assert [(a["result"]["status"], a["at"]) for a in attempts] == [("paused", 3), ("completed", STEPS)]
        assert bitwise_equal(attempts[-1]["params"], expected)
        assert bitwise_equal(launches(1, rank)["loop_reference"]["params"], expected)
    resumed = launches.attempts("loop", 0)[-1]["result"]
    assert joules_by_device(resumed) == pytest.approx(EXPECTED_J)
    assert resumed["report"]["pauses"] == 1


# --- in this process: the joining rule and the no-process-group cases -----------------------------------------
def window(
    rank: int, host: str, joules: dict[str, float], sources: dict[str, str], **identity: str
) -> RankWindow:
    measured = Measurement(
        f"w{rank}", START, START + pd.Timedelta(seconds=1), 1.0, joules, sources, (f"n{rank}",)
    )
    ids = {d: identity.get(d.replace(":", "_"), f"host-wide {d}") for d in joules}
    return RankWindow(rank, host, measured, ids)


def test_device_identity_tells_per_process_per_gpu_and_host_wide_devices_apart() -> None:
    assert device_identity("cpu", ESTIMATE, visible=None, process=41) == "process 41"
    assert device_identity("cpu:package-0", RAPL, visible=None, process=41) == "host-wide cpu:package-0"
    assert device_identity("ram", ESTIMATE, visible=None, process=41) == "host-wide ram"
    assert device_identity("cuda:1", NVML_ENERGY, visible=None, process=41) == "gpu 1"
    # a rank pinned to GPU 3 and a rank that sees GPUs 2,3 name the same GPU
    assert device_identity("cuda:0", NVML_ENERGY, visible=["3"], process=1) == device_identity(
        "cuda:1", NVML_ENERGY, visible=["2", "3"], process=2
    )


def test_join_windows_keeps_the_lowest_rank_of_a_host_for_shared_devices() -> None:
    sources = {"cuda:0": NVML_ENERGY, "cpu:package-0": RAPL}
    joined = join_windows([
        window(1, "a", {"cuda:0": 5.0, "cpu:package-0": 9.0}, sources, cuda_0="gpu 0"),  # sees rank 0's GPU
        window(0, "a", {"cuda:0": 5.0, "cpu:package-0": 9.0}, sources, cuda_0="gpu 0"),
        window(2, "b", {"cuda:0": 7.0, "cpu:package-0": 4.0}, sources, cuda_0="gpu 0"),
    ])  # fmt: skip
    assert joined.joules == {"rank0:cuda:0": 5.0, "rank0:cpu:package-0": 9.0, "rank2:cuda:0": 7.0,
                             "rank2:cpu:package-0": 4.0}  # fmt: skip
    assert joined.total_joules == 25.0
    assert joined.notes[:3] == ("n0", "n1", "n2")
    assert "rank1:cuda:0 (counted on rank0)" in joined.notes[-1]
    with pytest.raises(InvalidInputError, match="at least one rank"):
        join_windows([])


def test_without_a_process_group_the_default_is_one_process() -> None:
    assert not torch.distributed.is_initialized()
    assert isinstance(default_sync(), LocalSync)
    with pytest.raises(InvalidInputError, match="init_process_group"):
        TorchDistributedSync()


def test_per_rank_state_of_another_world_size_is_refused_by_name(tmp_path: Path) -> None:
    with carbon_session(tmp_path, total_steps=2) as carbon:
        carbon.resume()
        gathered = carbon.gather_per_rank({"rng": 1})
        assert gathered == [{"rng": 1}]
        assert carbon.entry_for_this_rank(gathered) == {"rng": 1}
        with pytest.raises(CheckpointError, match=r"per-rank state for 2 rank.*this job has 1"):
            carbon.entry_for_this_rank([{"rng": 1}, {"rng": 2}])
        with pytest.raises(CheckpointError, match=r"the list gather_per_rank.*not a dict"):
            carbon.entry_for_this_rank({"rng": 1})
        carbon.finish({})
