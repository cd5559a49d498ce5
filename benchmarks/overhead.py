"""Training-runner overhead: the same small CPU model trained bare and through the runner, interleaved.

Also the Lightning callback's: the same model as a LightningModule fitted without callbacks, with an empty
callback (what Lightning itself costs per extra callback) and with `CarbonAwareCallback` (fresh Trainers,
order rotating per round), under the key "lightning".

The runner runs with everything on: power monitor (background timeline), emissions ledger with a recorded
intensity trace under replay, and a strategy asked between steps. Step time is the time between consecutive
batch fetches, so it includes every piece of per-step bookkeeping. Prints JSON.

    python benchmarks/overhead.py [--rounds 10] [--steps 300] [--width 768] [--lightning-rounds 0]
"""

from __future__ import annotations

import argparse
import dataclasses
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
from carbon_sensors.training import SessionSettings, TrainingJob, TrainingRunner

ZONE = "DE"
SPEED = 60.0  # the replay's speed: grid seconds per wall second


@dataclasses.dataclass(frozen=True)
class Cadence:
    """How often the session decides and closes an energy window, in grid seconds."""

    decision_refresh_seconds: float
    measure_every_seconds: float


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

    def __init__(
        self,
        width: int,
        batch: int,
        steps: int,
        provider: TraceProvider,
        replay: Replay,
        cadence: Cadence,
    ) -> None:
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
        self.provider, self.replay, self.cadence = provider, replay, cadence
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
            intensity_source=self.provider, clock=self.replay.trace_time, clock_ns=self.replay.trace_time_ns,
            monitor=self.monitor, decision_refresh_seconds=self.cadence.decision_refresh_seconds,
            measure_every_seconds=self.cadence.measure_every_seconds,
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
    """The bench's model and data as a LightningModule, fitted three ways, interleaved: without callbacks,
    with a callback that does nothing (Lightning's own cost of dispatching every hook to one more callback)
    and with `CarbonAwareCallback`."""

    VARIANTS = ("bare", "empty_callback", "carbon")

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

        from carbon_sensors.integrations.lightning import CarbonAwareCallback

        hook_ns: list[int] = []

        class TimedCallback(CarbonAwareCallback):
            """The callback, with the time its per-batch hook takes recorded (the noise-free part of its cost)."""

            def on_train_batch_end(self, *args: Any) -> None:
                start = time.perf_counter_ns()
                super().on_train_batch_end(*args)
                hook_ns.append(time.perf_counter_ns() - start)

        self.bench, self.module = bench, Module(bench.model)
        self.timed_callback, self.hook_ns = TimedCallback, hook_ns
        self.steps: dict[str, list[float]] = {name: [] for name in self.VARIANTS}
        self.per_round: dict[str, list[float]] = {name: [] for name in self.VARIANTS[1:]}
        self.per_round_cpu: dict[str, list[float]] = {name: [] for name in self.VARIANTS[1:]}
        self.per_round_extra: dict[str, list[float]] = {name: [] for name in self.VARIANTS[1:]}

    def callbacks(self, variant: str) -> list[Any]:
        import lightning.pytorch as pl

        from carbon_sensors.training import CarbonSession, SessionSettings

        if variant == "bare":
            return []
        if variant == "empty_callback":
            return [pl.Callback()]
        bench = self.bench
        settings = SessionSettings(
            strategy=ThresholdStrategy(bench.provider), zone=ZONE, intensity_source=bench.provider,
            clock=bench.replay.trace_time, clock_ns=bench.replay.trace_time_ns, monitor=bench.monitor,
            decision_refresh_seconds=bench.cadence.decision_refresh_seconds,
            measure_every_seconds=bench.cadence.measure_every_seconds,
        )  # fmt: skip
        return [self.timed_callback(CarbonSession(bench.folder, settings))]

    def fit(self, variant: str) -> tuple[list[float], list[float]]:
        import lightning.pytorch as pl

        bench = self.bench
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=self.callbacks(variant),
        )  # fmt: skip
        bench.loader.stamps.clear()
        bench.loader.cpu_stamps.clear()
        trainer.fit(self.module, train_dataloaders=bench.loader)
        return step_times(bench.loader.stamps), step_times(bench.loader.cpu_stamps)

    def run(self, rounds: int) -> None:
        self.fit("bare")  # warm-up, not counted
        for r in range(rounds):
            order = self.VARIANTS[r % 3 :] + self.VARIANTS[: r % 3]  # each variant first, second, third
            times = {variant: self.fit(variant) for variant in order}
            bare, bare_cpu = times["bare"]
            self.steps["bare"] += bare
            for variant in self.VARIANTS[1:]:
                wall, cpu = times[variant]
                self.steps[variant] += wall
                self.per_round[variant].append(statistics.median(wall) / statistics.median(bare))
                self.per_round_extra[variant].append(statistics.median(wall) - statistics.median(bare))
                self.per_round_cpu[variant].append(statistics.median(cpu) / statistics.median(bare_cpu))

    def cost_us(self, variant: str) -> float:
        """Microseconds per step over the bare fit: the median over rounds of the paired difference."""
        return 1e6 * statistics.median(self.per_round_extra[variant])

    def summary(self, rounds: int) -> dict[str, Any]:
        def ratios(variant: str) -> dict[str, float]:
            return {
                "ratio": round(statistics.median(self.per_round[variant]), 4),
                "ratio_cpu": round(statistics.median(self.per_round_cpu[variant]), 4),
            }

        return {
            "bare_step_ms": round(1000 * statistics.median(self.steps["bare"]), 4),
            "callback_step_ms": round(1000 * statistics.median(self.steps["carbon"]), 4),
            **ratios("carbon"),
            "empty_callback": ratios("empty_callback"),
            "statistic": "median over rounds of (variant median step / bare median step) in the same round; "
            "ratio_cpu on the training thread's CPU time per step (time.thread_time)",
            "target": 1.01,
            "rounds": rounds,
            "method": "Trainer.fit without callbacks, with an empty pl.Callback and with CarbonAwareCallback "
            "(session with strategy, ledger, replayed trace, power monitor), order rotating per round; "
            "step = time between batch fetches",
        }


def lightning_figures(
    args: argparse.Namespace, provider: TraceProvider, replay: Replay, cadence: Cadence
) -> dict[str, Any]:
    """The Lightning comparison at the bench's width, and the per-step costs seen on tiny steps."""
    side = Bench(args.width, 64, args.steps, provider, replay, cadence)
    fits = LightningBench(side)
    fits.run(args.lightning_rounds)
    # steps that do almost nothing: the fixed costs show
    tiny_side = Bench(0, 1, 1000, provider, replay, cadence)
    tiny_fits = LightningBench(tiny_side)
    tiny_fits.run(args.lightning_rounds)
    for used in (side, tiny_side):
        used.monitor.close()
        shutil.rmtree(used.folder, ignore_errors=True)
    carbon_us, empty_us = tiny_fits.cost_us("carbon"), tiny_fits.cost_us("empty_callback")
    hook_us = 1e-3 * statistics.fmean(fits.hook_ns)
    return {
        **fits.summary(args.lightning_rounds),
        "hook_us_per_step": round(hook_us, 2),
        "hook_us_per_step_median": round(1e-3 * statistics.median(fits.hook_ns), 2),
        "hook_ratio_at_5ms_steps": round(1 + hook_us / 5000, 4),
        "hook_statistic": "time inside the callback's per-batch hook, timed in the fits above (mean over every "
        "step: decisions and energy windows included); Lightning's dispatch of that one hook is not in it",
        "callback_overhead_us_per_step": round(carbon_us, 2),
        "empty_callback_overhead_us_per_step": round(empty_us, 2),
        "callback_minus_empty_callback_us_per_step": round(carbon_us - empty_us, 2),
        "implied_ratio_at_5ms_steps": round(1 + carbon_us / 5000, 4),
        "tiny_bare_step_us": round(1e6 * statistics.median(tiny_fits.steps["bare"]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100, help="steps per block")
    parser.add_argument("--width", type=int, default=720, help="hidden width: sets the step time (~5 ms)")
    parser.add_argument(
        "--lightning-rounds", type=int, default=20, help="rounds of the Lightning comparison (0: skip it)"
    )
    defaults = SessionSettings()  # their cadences in wall time, as a live run has them
    for name, default in (
        ("decision_refresh_seconds", defaults.decision_refresh_seconds),
        ("measure_every_seconds", defaults.measure_every_seconds),
    ):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=float, default=default * SPEED,
            help=f"grid seconds (the replay runs at {SPEED:g}x; default: the session's {default:g} s of wall time)",
        )  # fmt: skip
    args = parser.parse_args()
    cadence = Cadence(args.decision_refresh_seconds, args.measure_every_seconds)
    torch.set_num_threads(1)
    replay = Replay.starting_now(pd.Timestamp("2023-06-01T00:00Z"), speed=SPEED)
    provider = TraceProvider(replay=replay)

    main_bench = Bench(args.width, 64, args.steps, provider, replay, cadence)
    main_bench.run(args.rounds)
    lightning = lightning_figures(args, provider, replay, cadence) if args.lightning_rounds else None
    # The runner's own cost per step, seen on a step that does almost nothing.
    tiny = Bench(0, 1, 1000, provider, replay, cadence)
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
                **dataclasses.asdict(cadence),
                "replay_speed": SPEED,
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
