"""Training-runner overhead: the same small CPU model trained bare and through the runner, interleaved.

The runner runs with everything on: power monitor (background timeline), emissions ledger with a recorded
intensity trace under replay, and a strategy asked between steps. Step time is the time between consecutive
batch fetches, so it includes every piece of per-step bookkeeping. Prints JSON.

    python benchmarks/overhead.py [--rounds 10] [--steps 300] [--width 768]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from carbon_sensors.decision import Decision
from carbon_sensors.power import PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.replay import Replay
from carbon_sensors.training import TrainingJob, TrainingRunner

ZONE = "DE"


class StampedLoader:
    """Wraps a DataLoader and records the moment each batch is handed out."""

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader, self.stamps = loader, list[float]()

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.stamps.append(time.perf_counter())
            yield batch


class ThresholdStrategy:
    """Runs while the replayed intensity is under a (generous) threshold: a real lookup per decision."""

    def __init__(self, provider: TraceProvider, threshold: float = 10_000.0) -> None:
        self.provider, self.threshold = provider, threshold

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        reading = self.provider.latest(ZONE)
        if reading.value <= self.threshold:
            return Decision.run("under threshold", intensity=reading.value, source=reading.source)
        return Decision.pause_until(now + timedelta(minutes=30), "over threshold", intensity=reading.value)


def step_times(stamps: list[float]) -> list[float]:
    """Seconds between consecutive batches; the first gap (loader start-up) is dropped."""
    return [b - a for a, b in itertools.pairwise(stamps[1:])]


class Bench:
    """One model and loader, trained in alternating bare and runner blocks; collects per-step times."""

    def __init__(self, width: int, batch: int, steps: int, provider: TraceProvider, replay: Replay) -> None:
        torch.manual_seed(0)
        features = 256 if width else 4
        x, y = torch.randn(batch * steps, features), torch.randn(batch * steps, 1)
        layers: list[nn.Module] = (
            [nn.Linear(features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)]
            if width
            else [nn.Linear(features, 1)]
        )
        self.model = nn.Sequential(*layers)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3)
        self.loader = StampedLoader(DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True))
        self.provider, self.replay = provider, replay
        self.monitor = PowerMonitor(sample_interval_s=1.0)
        self.folder = tempfile.mkdtemp(prefix="overhead-")
        self.bare: list[float] = []
        self.runner: list[float] = []
        self.per_round: list[float] = []

    def bare_block(self) -> list[float]:
        self.loader.stamps.clear()
        for inputs, targets in self.loader:
            self.optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(self.model(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
        return step_times(self.loader.stamps)

    def runner_block(self) -> list[float]:
        self.loader.stamps.clear()
        job = TrainingJob(self.model, self.optimizer, self.loader, loss_fn=nn.functional.mse_loss)
        runner = TrainingRunner(
            job, checkpoint_dir=self.folder, strategy=ThresholdStrategy(self.provider), zone=ZONE,
            intensity_source=self.provider, clock=self.replay.trace_time, monitor=self.monitor,
            decision_refresh_seconds=1.0, measure_every_seconds=1.0,
        )  # fmt: skip
        assert runner.run().status == "completed"
        return step_times(self.loader.stamps)

    def run(self, rounds: int) -> None:
        self.bare_block()  # warm-up, not counted
        for r in range(rounds):
            blocks = {"bare": self.bare_block, "runner": self.runner_block}
            order = ("bare", "runner") if r % 2 == 0 else ("runner", "bare")
            times = {name: blocks[name]() for name in order}
            self.bare += times["bare"]
            self.runner += times["runner"]
            self.per_round.append(statistics.median(times["runner"]) / statistics.median(times["bare"]))
        self.monitor.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100, help="steps per block")
    parser.add_argument("--width", type=int, default=1024, help="hidden width: sets the step time (~5-8 ms)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    replay = Replay.starting_now(pd.Timestamp("2023-06-01T00:00Z"), speed=60.0)
    provider = TraceProvider(replay=replay)

    main_bench = Bench(args.width, 64, args.steps, provider, replay)
    main_bench.run(args.rounds)
    # The runner's own cost per step, seen on a step that does almost nothing.
    tiny = Bench(0, 1, 1000, provider, replay)
    tiny.run(6)

    def ms(values: list[float], fn: Callable[[list[float]], float] = statistics.median) -> float:
        return round(1000 * fn(values), 4)

    overhead_us = 1e6 * (statistics.median(tiny.runner) - statistics.median(tiny.bare))
    print(
        json.dumps(
            {
                "bare_step_ms": ms(main_bench.bare),
                "runner_step_ms": ms(main_bench.runner),
                "ratio": round(statistics.median(main_bench.per_round), 4),
                "statistic": "median over rounds of (runner median step / bare median step) in the same round: "
                "a paired comparison, robust to load that changes between rounds",
                "ratio_pooled_median": round(
                    statistics.median(main_bench.runner) / statistics.median(main_bench.bare), 4
                ),
                "bare_step_ms_mean": ms(main_bench.bare, statistics.fmean),
                "runner_step_ms_mean": ms(main_bench.runner, statistics.fmean),
                "ratio_mean": round(
                    statistics.fmean(main_bench.runner) / statistics.fmean(main_bench.bare), 4
                ),
                "runner_overhead_us_per_step": round(overhead_us, 2),
                "implied_ratio_at_5ms_steps": round(1 + overhead_us / 5000, 4),
                "rounds": args.rounds,
                "steps_per_block": args.steps,
                "torch_threads": torch.get_num_threads(),
                "power_sources": sorted(set(main_bench.monitor.sources().values())),
                "method": "bare and runner blocks interleaved, order alternating per round; "
                "step = time between consecutive batch fetches",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
