"""Training-runner overhead: the same small CPU model trained bare and through the runner, interleaved.

Also the Lightning callback's: the same model as a LightningModule fitted with and without
`CarbonAwareCallback` (fresh Trainers, alternating order per round), under the key "lightning".

The runner runs with everything on: power monitor (background timeline), emissions ledger with a recorded
intensity trace under replay, and a strategy asked between steps. Step time is the time between consecutive
batch fetches, so it includes every piece of per-step bookkeeping. Prints JSON.

    python benchmarks/overhead.py [--rounds 10] [--steps 300] [--width 768] [--lightning-rounds 0]
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
DECISION_REFRESH = [1.0]  # grid seconds between strategy decisions (--decision-refresh-seconds)


class StampedLoader:
    """Wraps a DataLoader and records the moment each batch is handed out."""

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader, self.stamps = loader, list[float]()
        self.cpu_stamps: list[float] = []  # this thread's CPU time: barely moved by other processes' load

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.stamps.append(time.perf_counter())
            self.cpu_stamps.append(time.thread_time())
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
            decision_refresh_seconds=DECISION_REFRESH[0], measure_every_seconds=1.0,
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


class LightningBench:
    """The bench's model and data as a LightningModule, fitted with and without the callback, interleaved."""

    def __init__(self, bench: Bench) -> None:
        import lightning.pytorch as pl

        class Module(pl.LightningModule):
            def __init__(self, net: nn.Module) -> None:
                super().__init__()
                self.net = net

            def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
                inputs, targets = batch
                return nn.functional.mse_loss(self.net(inputs), targets)

            def configure_optimizers(self) -> torch.optim.Optimizer:
                return torch.optim.SGD(self.parameters(), lr=1e-3)

        self.bench, self.module = bench, Module(bench.model)
        self.bare: list[float] = []
        self.callback: list[float] = []
        self.per_round: list[float] = []
        self.per_round_cpu: list[float] = []

    def fit(self, with_callback: bool) -> tuple[list[float], list[float]]:
        import lightning.pytorch as pl

        from carbon_sensors.integrations.lightning import CarbonAwareCallback
        from carbon_sensors.training import CarbonSession, SessionSettings

        bench = self.bench
        callbacks: list[pl.Callback] = []
        if with_callback:
            settings = SessionSettings(
                strategy=ThresholdStrategy(bench.provider), zone=ZONE, intensity_source=bench.provider,
                clock=bench.replay.trace_time, monitor=bench.monitor,
                decision_refresh_seconds=DECISION_REFRESH[0], measure_every_seconds=1.0,
            )  # fmt: skip
            callbacks.append(CarbonAwareCallback(CarbonSession(bench.folder, settings)))
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
        )  # fmt: skip
        bench.loader.stamps.clear()
        bench.loader.cpu_stamps.clear()
        trainer.fit(self.module, train_dataloaders=bench.loader)
        return step_times(bench.loader.stamps), step_times(bench.loader.cpu_stamps)

    def run(self, rounds: int) -> None:
        self.fit(False)  # warm-up, not counted
        for r in range(rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            times = {with_callback: self.fit(with_callback) for with_callback in order}
            (bare, bare_cpu), (callback, callback_cpu) = times[False], times[True]
            self.bare += bare
            self.callback += callback
            self.per_round.append(statistics.median(callback) / statistics.median(bare))
            self.per_round_cpu.append(statistics.median(callback_cpu) / statistics.median(bare_cpu))

    def summary(self, rounds: int) -> dict[str, Any]:
        return {
            "bare_step_ms": round(1000 * statistics.median(self.bare), 4),
            "callback_step_ms": round(1000 * statistics.median(self.callback), 4),
            "ratio": round(statistics.median(self.per_round), 4),
            "ratio_pooled_median": round(statistics.median(self.callback) / statistics.median(self.bare), 4),
            "ratio_mean": round(statistics.fmean(self.callback) / statistics.fmean(self.bare), 4),
            "ratio_cpu": round(statistics.median(self.per_round_cpu), 4),
            "ratio_cpu_statistic": "as ratio, on the training thread's CPU time per step (time.thread_time), "
            "which other processes' load barely moves",
            "target": 1.01,
            "rounds": rounds,
            "method": "Trainer.fit with and without CarbonAwareCallback (session with strategy, ledger, replayed "
            "trace, power monitor), order alternating per round; step = time between batch fetches",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100, help="steps per block")
    parser.add_argument("--width", type=int, default=1024, help="hidden width: sets the step time (~5-8 ms)")
    parser.add_argument(
        "--lightning-rounds", type=int, default=20, help="rounds of the Lightning comparison (0: skip it)"
    )
    parser.add_argument(
        "--decision-refresh-seconds", type=float, default=1.0,
        help="grid seconds between decisions (replay runs at 60x: 1.0 is a decision every ~17 ms of wall time)",
    )  # fmt: skip
    args = parser.parse_args()
    DECISION_REFRESH[0] = args.decision_refresh_seconds
    torch.set_num_threads(1)
    replay = Replay.starting_now(pd.Timestamp("2023-06-01T00:00Z"), speed=60.0)
    provider = TraceProvider(replay=replay)

    main_bench = Bench(args.width, 64, args.steps, provider, replay)
    main_bench.run(args.rounds)
    lightning: dict[str, Any] | None = None
    if args.lightning_rounds:
        side = Bench(args.width, 64, args.steps, provider, replay)
        fits = LightningBench(side)
        fits.run(args.lightning_rounds)
        # the callback's own cost per step, seen on a step that does almost nothing
        tiny_side = Bench(0, 1, 1000, provider, replay)
        tiny_fits = LightningBench(tiny_side)
        tiny_fits.run(4)
        for used in (side, tiny_side):
            used.monitor.close()
            shutil.rmtree(used.folder, ignore_errors=True)
        lightning = fits.summary(args.lightning_rounds)
        cost_us = 1e6 * (statistics.median(tiny_fits.callback) - statistics.median(tiny_fits.bare))
        lightning["callback_overhead_us_per_step"] = round(cost_us, 2)
        lightning["implied_ratio_at_5ms_steps"] = round(1 + cost_us / 5000, 4)
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
                "decision_refresh_seconds": args.decision_refresh_seconds,
                "torch_threads": torch.get_num_threads(),
                "power_sources": sorted(set(main_bench.monitor.sources().values())),
                "method": "bare and runner blocks interleaved, order alternating per round; "
                "step = time between consecutive batch fetches",
                "lightning": lightning,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
