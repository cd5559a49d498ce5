"""A hand-written loop (gradient accumulation, a scheduler, an EMA) made carbon-aware with `carbon_session`.

Replayed on a dirty/clean trace with a real `ThresholdStrategy`, it pauses twice, each resume in fresh
objects, and ends bitwise where an uninterrupted run ends; the report's energy is every segment's, once.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn
from training_models import START, FakeClock, StepMeter, dirty_clean_trace

from carbon_sensors.decision import Decision
from carbon_sensors.emissions import read_jsonl
from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.power import PowerMonitor
from carbon_sensors.strategies import ThresholdStrategy
from carbon_sensors.training import TrainingResult, carbon_session

STEPS, MICRO_BATCHES, STEPS_PER_EPOCH = 30, 2, 10
STEP_TIME = timedelta(minutes=10)  # of grid time: 30 steps span 5 h of the trace
JOULES_PER_STEP = 2.0


def data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(STEPS * MICRO_BATCHES, 8, 4, generator=gen)
    return [(x, x.sum(dim=1, keepdim=True) * 0.5) for x in xs]


class Loop:
    """The user's own loop and its state; each instance starts from other random weights (a fresh process)."""

    def __init__(self, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, step_size=7, gamma=0.5)
        self.ema = [p.detach().clone() for p in self.model.parameters()]

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(), "ema": self.ema}  # fmt: skip

    def load(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.ema = state["ema"]

    def train_step(self, batches: list[tuple[torch.Tensor, torch.Tensor]], step: int) -> torch.Tensor:
        loss = torch.zeros(())
        for x, y in batches[step * MICRO_BATCHES : (step + 1) * MICRO_BATCHES]:
            micro = nn.functional.mse_loss(self.model(x), y) / MICRO_BATCHES
            micro.backward()  # type: ignore[no-untyped-call]
            loss = loss + micro.detach()
        self.opt.step()
        self.opt.zero_grad()
        self.sched.step()
        with torch.no_grad():
            for avg, p in zip(self.ema, self.model.parameters(), strict=True):
                avg.mul_(0.9).add_(p.detach(), alpha=0.1)
        return loss


def attempt(loop: Loop, ckpt: Path, clock: FakeClock, meter: StepMeter, **settings: Any) -> TrainingResult:
    """One process's worth of training: resume, train until done or told to pause."""
    batches = data()
    with carbon_session(
        ckpt, total_steps=STEPS, clock=clock, monitor=PowerMonitor([meter], start=False),
        decision_refresh_seconds=0, estimated_step_seconds=STEP_TIME.total_seconds(), **settings,
    ) as carbon:  # fmt: skip
        state = carbon.resume()
        if state is not None:
            loop.load(state)
        for step in range(carbon.steps_done, STEPS):
            if carbon.should_pause():
                return carbon.pause(loop.state())
            loss = loop.train_step(batches, step)
            meter.advance()
            clock.now += STEP_TIME
            carbon.step(loss)
            if carbon.steps_done % STEPS_PER_EPOCH == 0:
                carbon.end_epoch()
            if carbon.checkpoint_due():
                carbon.save(loop.state())
        return carbon.finish(loop.state())


def threshold() -> ThresholdStrategy:
    return ThresholdStrategy(dirty_clean_trace(), "XX", pause_above=300, resume_below=200,
                             max_pause=timedelta(hours=6), recheck=timedelta(hours=1))  # fmt: skip


def test_two_pauses_with_fresh_objects_end_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = Loop(seed=1)
    done = attempt(straight, tmp_path / "straight", FakeClock(), StepMeter(JOULES_PER_STEP))
    assert done.status == "completed" and done.steps_done == STEPS

    clock, meter = FakeClock(), StepMeter(JOULES_PER_STEP)
    settings = {"strategy": threshold(), "zone": "XX", "intensity_source": dirty_clean_trace()}
    results = [attempt(Loop(seed=1), tmp_path / "paused", clock, meter, **settings)]
    while results[-1].status == "paused":
        until = results[-1].paused_until
        assert until is not None
        clock.now = max(clock.now, until)  # the orchestrator wakes the task at the pause's end
        results.append(attempt(Loop(seed=99), tmp_path / "paused", clock, meter, **settings))

    # the strategy sees hour 2 (and 5) dirty at its first check inside it, 02:10 (05:10), after step 13 (25)
    assert [(r.status, r.steps_done) for r in results] == [
        ("paused", 13),
        ("paused", 25),
        ("completed", STEPS),
    ]
    assert [r.paused_until for r in results[:2]] == [START + timedelta(hours=3, minutes=10),
                                                     START + timedelta(hours=6, minutes=10)]  # fmt: skip
    resumed = Loop(seed=5)
    resumed.load(torch.load(str(results[-1].checkpoint_path), weights_only=True)["user"])
    for got, want in zip([*resumed.model.parameters(), *resumed.ema],
                         [*straight.model.parameters(), *straight.ema], strict=True):  # fmt: skip
        assert torch.equal(got, want)

    report = results[-1].report
    assert report.energy_kwh == pytest.approx(STEPS * JOULES_PER_STEP / 3.6e6, rel=1e-9)  # every step once
    assert sum(e["joules"] for e in results[-1].epochs) == pytest.approx(STEPS * JOULES_PER_STEP)
    assert report.pauses == len(results) - 1
    assert [a.from_step for a in read_jsonl(tmp_path / "paused" / "emissions.jsonl").attempts] == [
        r.started_at_step for r in results
    ]
    assert report.run_now_emissions_g is not None and report.emissions_g < report.run_now_emissions_g
    assert report.avoided_g > 0  # the run-now twin trains through both dirty hours


def test_a_pause_without_a_checkpoint_of_its_step_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    with carbon_session(tmp_path, clock=clock, monitor=PowerMonitor([StepMeter()], start=False)) as carbon:
        carbon.resume()
        carbon.step()
        with pytest.raises(CheckpointError, match="stopped at step 1 without a checkpoint of it"):
            carbon.pause()
        carbon.save({"step": 1})
        assert carbon.pause().status == "stopped"  # no hold: the loop chose to stop
    refused = carbon_session(tmp_path, strategi=None)
    with pytest.raises(InvalidInputError, match=r"unknown session setting.*'strategi'.*valid"):
        refused.__enter__()  # the settings are checked as the block is entered


def test_an_exception_in_the_loop_keeps_its_energy_and_marks_the_attempt_failed(tmp_path: Path) -> None:
    meter = StepMeter(JOULES_PER_STEP)
    with (
        pytest.raises(RuntimeError, match="NaN loss"),
        carbon_session(tmp_path, clock=FakeClock(), monitor=PowerMonitor([meter], start=False)) as carbon,
    ):
        carbon.resume()
        for _ in range(3):
            meter.advance()
            carbon.step()
        raise RuntimeError("NaN loss")
    timeline = read_jsonl(tmp_path / "emissions.jsonl")
    assert [a.status for a in timeline.attempts] == ["failed"]
    assert timeline.report().energy_kwh == pytest.approx(3 * JOULES_PER_STEP / 3.6e6)


class AskedAt:
    """A strategy that records when it is asked; it holds for an hour when asked at `hold_at`."""

    def __init__(self, hold_at: pd.Timestamp) -> None:
        self.hold_at, self.asked = hold_at, list[pd.Timestamp]()

    def decide(self, now: pd.Timestamp, *, remaining_work: Any, deadline: Any) -> Decision:
        self.asked.append(now)
        if now == self.hold_at:
            return Decision.pause_until(now + timedelta(hours=1), "dirty")
        return Decision.run("clean")


def test_steps_between_decisions_skip_the_poll_yet_each_decision_comes_at_its_step(tmp_path: Path) -> None:
    refresh = 3 * STEP_TIME  # with no energy window due either, two steps of three need no poll
    strategy = AskedAt(hold_at=START + 7 * STEP_TIME)  # the first decision is after step 1
    clock = FakeClock()
    with carbon_session(
        tmp_path, total_steps=STEPS, clock=clock, monitor=PowerMonitor([StepMeter()], start=False),
        strategy=strategy, decision_refresh_seconds=refresh.total_seconds(), measure_every_seconds=36_000,
        estimated_step_seconds=STEP_TIME.total_seconds(),
    ) as carbon:  # fmt: skip
        carbon.resume()
        paused_at = None
        for _ in range(STEPS):
            clock.now += STEP_TIME
            carbon.step()
            if carbon.should_pause():
                paused_at = carbon.steps_done
                break
        carbon.save({"step": paused_at})
        assert carbon.pause().status == "paused"
    assert paused_at == 7
    assert strategy.asked == [START + STEP_TIME + k * refresh for k in range(3)]


def test_a_clock_ns_that_is_another_clock_is_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    wrong = carbon_session(tmp_path, clock=clock, clock_ns=lambda: (START + timedelta(hours=1)).value)
    with (
        pytest.raises(InvalidInputError, match=r"clock\(\) says 2023-06-01T00:00:00\+00:00 but clock_ns\(\)"),
        wrong as carbon,
    ):
        carbon.resume()
