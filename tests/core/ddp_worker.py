"""Helper process for test_distributed: launches 2-rank gloo jobs as torchrun would, and records them.

`python ddp_worker.py OUT_DIR` imports torch once, then makes two launches; each forks 2 fresh rank
processes that find each other through torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR
127.0.0.1, MASTER_PORT a free port) and `init_process_group("gloo")`. Launch 1 checks the sync directly,
trains the reference run (uninterrupted), and the paused run's first attempt (pauses at step 5); launch 2
resumes the paused run in new processes (pauses again at step 11), then resumes it once more with new trainer
objects and completes it. The plain-loop (`carbon_session`) job does the same in each launch. Each rank saves
what it saw in OUT_DIR/launch<N>-rank<R>.pt; the helper prints "launch N ok SECONDS" or exits non-zero
naming the rank that failed. A rank that fails, or a launch that hangs past LAUNCH_TIMEOUT_S, gets the
launch's other rank killed (a peer stuck in a collective would otherwise wait for gloo's own timeout).
The parent never runs a torch op, so the ranks start with no thread pools to inherit.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler
from training_models import START, AlwaysPause, FakeClock, PauseAtSteps, seed_everything

from carbon_sensors.decision import Strategy
from carbon_sensors.power import ESTIMATE, NVML_ENERGY, RAPL, Measurement, PowerMonitor
from carbon_sensors.training import TrainingJob, TrainingResult, TrainingRunner, carbon_session
from carbon_sensors.training.distributed import TorchDistributedSync, default_sync

WORLD = 2
STEPS = 24  # 3 epochs of 8 batches of 4 per rank
COLLECTIVE_TIMEOUT = timedelta(seconds=60)
LAUNCH_TIMEOUT_S = 150.0
# joules per step each rank's fake meter adds: its own GPU (rank-dependent), its own CPU share, the host's package
GPU_J = (1.0, 2.0)
CPU_J = 0.5
PACKAGE_J = 10.0


class StepMeter:
    """A deterministic meter: joules grow with the steps this rank has done, as a busy device's would."""

    def __init__(self, rank: int, progress: Callable[[], int]) -> None:
        self.rank, self.progress = rank, progress

    def devices(self) -> dict[str, str]:
        return {"cuda:0": NVML_ENERGY, "cpu": ESTIMATE, "cpu:package-0": RAPL}

    def read_joules(self) -> dict[str, float]:
        steps = self.progress()
        return {"cuda:0": GPU_J[self.rank] * steps, "cpu": CPU_J * steps, "cpu:package-0": PACKAGE_J * steps}

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        """Nothing to stop."""


def ddp_job(init_seed: int, rank: int) -> TrainingJob:
    """The tiny job of training_models, DDP-wrapped, each rank reading its shard through a DistributedSampler."""
    data = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=data), torch.randn(64, 1, generator=data)
    torch.manual_seed(init_seed)
    model = DistributedDataParallel(
        nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    dataset = TensorDataset(x, y)
    sampler: DistributedSampler[Any] = DistributedSampler(dataset, num_replicas=WORLD, rank=rank, seed=3)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    return TrainingJob(
        model, optimizer, loader, loss_fn=nn.functional.mse_loss, scheduler=scheduler, epochs=3
    )


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def strategy_for(rank: int, pause_at: set[int], progress: Callable[[], int]) -> Strategy:
    """The writer's scripted pauses; the other rank's strategy would pause at once if it were ever asked."""
    if rank != 0:
        return AlwaysPause()
    strategy = PauseAtSteps(pause_at)
    strategy.progress = progress
    return strategy


def run_job(
    rank: int, folder: Path, *, pause_at: set[int], clock: FakeClock, resume: str | None, seed: int
) -> dict[str, Any]:
    """One attempt of the runner's DDP job in a new trainer object (a new job with other weights and RNG)."""
    job = ddp_job(seed, rank)
    seed_everything(123 + rank if resume is None else seed)  # ranks draw apart (dropout)
    holder: list[TrainingRunner] = []

    def progress() -> int:
        return holder[0].steps_done if holder else 0

    runner = TrainingRunner(
        job, checkpoint_dir=folder, sync=TorchDistributedSync(), strategy=strategy_for(rank, pause_at, progress),
        clock=clock, monitor=PowerMonitor([StepMeter(rank, progress)], start=False), decision_refresh_seconds=0,
        estimated_step_seconds=1.0, measure_every_seconds=0, checkpoint_every_steps=4, checkpoint_every=None,
    )  # fmt: skip
    holder.append(runner)
    result = runner.run(resume_from=resume)
    return outcome(result, job.model)


def outcome(result: TrainingResult, model: nn.Module) -> dict[str, Any]:
    return {"result": result.to_dict(), "params": params(model), "at": result.steps_done}


def loop_attempt(
    rank: int, folder: Path, *, pause_at: set[int], clock: FakeClock, resume: str | None, seed: int
) -> dict[str, Any]:
    """A hand-written DDP loop on `carbon_session`: fixed per-rank batches, dropout, momentum."""
    data = torch.Generator().manual_seed(5)
    xs, ys = torch.randn(STEPS, WORLD, 4, 8, generator=data), torch.randn(STEPS, WORLD, 4, 1, generator=data)
    torch.manual_seed(seed)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.3), nn.Linear(8, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    seed_everything(123 + rank if resume is None else seed)  # ranks draw apart (dropout)
    sessions: list[Any] = []

    def progress() -> int:
        return int(sessions[0].steps_done) if sessions else 0

    def state() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": sessions[0].gather_per_rank(torch.get_rng_state()),  # each rank's own (dropout)
        }

    with carbon_session(
        folder, total_steps=STEPS, sync=default_sync(), strategy=strategy_for(rank, pause_at, progress), clock=clock,
        monitor=PowerMonitor([StepMeter(rank, progress)], start=False), decision_refresh_seconds=0,
        estimated_step_seconds=1.0, checkpoint_every=None,
    ) as carbon:  # fmt: skip
        sessions.append(carbon)
        saved = carbon.resume(resume)
        if saved is not None:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            torch.set_rng_state(carbon.entry_for_this_rank(saved["rng"]))
        for step in range(carbon.steps_done, STEPS):
            if carbon.should_pause():
                return outcome(carbon.pause(state()), model)
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(xs[step, rank]), ys[step, rank])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            carbon.step(loss.detach())
        return outcome(carbon.finish(state()), model)


def sync_checks(rank: int) -> dict[str, Any]:
    """The sync on its own: a broadcast of the writer's values, a joined window, the broadcast's cost."""
    sync = TorchDistributedSync()
    agreed = sync.agree([rank * 10 + 1, -7, 2**62])
    now = START
    window = Measurement(
        "w", now, now + timedelta(seconds=rank + 1), float(rank + 1),
        {"cuda:0": GPU_J[rank], "cpu": CPU_J, "cpu:package-0": PACKAGE_J, "ram": 3.0},
        {"cuda:0": NVML_ENERGY, "cpu": ESTIMATE, "cpu:package-0": RAPL, "ram": ESTIMATE},
    )  # fmt: skip
    joined = sync.total(window)
    apart = TorchDistributedSync(host=f"node{rank}").total(window)  # as if each rank had a host of its own
    alone = sync.own(window).joules if rank == 1 else None  # no collective: rank 1 alone calls it
    flags = [0, 0]
    started = time.perf_counter()
    for _ in range(200):
        flags = sync.agree(flags)
    per_agree = (time.perf_counter() - started) / 200
    return {"agreed": agreed, "joined": joined.joules, "joined_sources": joined.sources,
            "joined_seconds": joined.seconds, "apart": apart.joules, "alone": alone,
            "agree_seconds": per_agree}  # fmt: skip


def launch_1(rank: int, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"checks": sync_checks(rank)}
    out["reference"] = run_job(rank, root / "ref", pause_at=set(), clock=FakeClock(), resume=None, seed=1)
    out["paused"] = [run_job(rank, root / "paused", pause_at={5}, clock=FakeClock(), resume=None, seed=1)]
    out["loop_reference"] = loop_attempt(
        rank, root / "loop-ref", pause_at=set(), clock=FakeClock(), resume=None, seed=1
    )
    out["loop"] = [loop_attempt(rank, root / "loop", pause_at={3}, clock=FakeClock(), resume=None, seed=1)]
    return out


def launch_2(rank: int, root: Path) -> dict[str, Any]:
    later, latest = FakeClock(START + timedelta(days=1)), FakeClock(START + timedelta(days=2))
    paused = [run_job(rank, root / "paused", pause_at={11}, clock=later, resume="latest", seed=999 + rank)]
    dist.barrier()  # the writer's checkpoint of step 11 is written before any rank looks for it
    paused.append(
        run_job(rank, root / "paused", pause_at=set(), clock=latest, resume="latest", seed=555 + rank)
    )
    loop = [loop_attempt(rank, root / "loop", pause_at=set(), clock=later, resume="latest", seed=777 + rank)]
    return {"paused": paused, "loop": loop}


def rank_main(launch: int, rank: int, port: int, root: Path) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))  # fmt: skip
    os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)  # one GPU per rank, as a launcher that pins GPUs does
    if Path("/sys/class/net/lo").exists():
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        started = time.perf_counter()
        out = (launch_1 if launch == 1 else launch_2)(rank, root)
        out["seconds"] = time.perf_counter() - started
        torch.save(out, root / f"launch{launch}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch(number: int, root: Path) -> None:
    """Fork the ranks of one launch and wait for both; a failed or hung rank gets the other killed."""
    port, started = free_port(), time.monotonic()
    pids: dict[int, int] = {}
    for rank in range(WORLD):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                rank_main(number, rank, port, root)
            except BaseException:  # report, never fall back into the parent's loop
                sys.stderr.write(f"rank {rank} of launch {number} failed:\n{traceback.format_exc()}")
                code = 1
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids[pid] = rank
    failed: list[str] = []
    while pids:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if time.monotonic() - started > LAUNCH_TIMEOUT_S:
                failed.append(f"ranks {sorted(pids.values())} hung past {LAUNCH_TIMEOUT_S} s")
                kill(pids)
            time.sleep(0.05)
            continue
        rank, code = pids.pop(pid), os.waitstatus_to_exitcode(status)
        if code != 0:
            failed.append(f"rank {rank} exited with {code}")
            kill(pids)
    if failed:
        print(f"launch {number} failed: {'; '.join(failed)}", flush=True)
        sys.exit(1)
    print(f"launch {number} ok {time.monotonic() - started:.2f}", flush=True)


def kill(pids: dict[int, int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    import torch._dynamo  # noqa: F401  an optimizer's first use imports it: seconds, paid once, not per rank

    root = Path(sys.argv[1])
    for number in (1, 2):
        launch(number, root)


if __name__ == "__main__":
    main()
