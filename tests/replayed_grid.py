"""The replayed grid the framework tests train on: recorded DE-LU June 2023, a clock every step moves on.

Shared by the Lightning and the Hugging Face tests (importable from every test folder: pytest puts `tests/`
on the path with its conftest). The trace's life-cycle intensities: 188 g at 10:00, 210 at 14:00 (dirty until
09:00 the next day), 201 at 2023-06-02 15:00 (dirty until 2023-06-03 08:00): 24 half-hour steps from
START pause twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from carbon_sensors.power import EstimateMeter, PowerMonitor
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import ThresholdStrategy
from carbon_sensors.training import CarbonSession, SessionSettings

TRACE = Path(__file__).parent / "fixtures" / "traces" / "DE-LU_2023-06_hourly.csv"
START = pd.Timestamp("2023-06-01T10:30Z")
STEP = timedelta(minutes=30)  # grid time per training step


class GridClock:
    """Replayed grid time: every training step takes `STEP` of it; tests move it on across pauses."""

    def __init__(self, now: pd.Timestamp = START) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now

    def seconds(self) -> float:
        return (self.now - START).total_seconds()


def strategy() -> ThresholdStrategy:
    """Pause above 200 g/kWh, resume below 180 on the recorded DE-LU grid of June 2023."""
    provider = TraceProvider(files={"DE": TRACE})
    return ThresholdStrategy(provider, "DE", pause_above=200, resume_below=180, max_pause=timedelta(days=2))


def session(
    folder: Path, clock: GridClock, pausing: ThresholdStrategy | None, total: int | None = None, **extra: Any
) -> CarbonSession:
    """Energy from a meter that runs on grid time (RAM watts x grid seconds): the same for every run."""
    meter = EstimateMeter(include_cpu=False, monotonic=clock.seconds)
    settings: dict[str, Any] = {
        "strategy": pausing, "zone": "DE", "intensity_source": TraceProvider(files={"DE": TRACE}), "clock": clock,
        "monitor": PowerMonitor([meter], start=False), "decision_refresh_seconds": 0, "measure_every_seconds": 0,
        "estimated_step_seconds": STEP.total_seconds(), "checkpoint_every": None, "stop_on_sigterm": False,
    }  # fmt: skip
    return CarbonSession(folder, SessionSettings(**{**settings, **extra}), total_steps=total)


def parameters(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def wake_time(pausing: ThresholdStrategy, paused_until: pd.Timestamp) -> pd.Timestamp:
    """When a face's wake-up finds the grid clean: re-ask at each held decision's end, as the trigger does."""
    now = paused_until
    while (
        decision := pausing.decide(now, remaining_work=timedelta(hours=1), deadline=None)
    ).until is not None:
        now = decision.until
    return now
