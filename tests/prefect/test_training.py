"""The training task and flow on the shared Prefect test server: artifacts read back through the client,
events, pauses resumed from checkpoints in fresh runners, and rescheduling inside a deployment.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
import pytest
import torch
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import Artifact, State
from prefect.events import Event
from prefect.flow_engine import run_flow
from prefect_helpers import deploy

from carbon_flows import events
from carbon_flows.artifacts import REPORT_ROWS, readable
from carbon_flows.training import (
    TrainingOutcome,
    build_strategy,
    carbon_aware_training,
    strategy_options_for,
    train_carbon_aware,
)
from carbon_flows.wait import WindowOutcome, wait_for_low_carbon
from carbon_sensors.decision import Decision
from carbon_sensors.errors import InvalidInputError, UnknownZoneError
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.replay import Replay
from carbon_sensors.training import TrainingJob
from carbon_sensors.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
JOB = f"{REPO / 'flows' / 'carbon_training.py'}:tiny_regression_job"
GREEN = pd.Timestamp("2023-06-02T11:00Z")  # DE ~155 gCO2eq/kWh
DEADLINE = "2023-06-02T23:00Z"


def tiny_job() -> TrainingJob:
    from prefect.utilities.importtools import import_object

    factory = import_object(JOB)
    job = factory(epochs=2)
    assert isinstance(job, TrainingJob)
    return job


class PauseOnCalls:
    """A strategy that says 'pause for `pause` of grid time' on the given decision calls, else 'run'.

    Stands for a dirty grid at chosen moments, so the test controls exactly where training stops.
    """

    def __init__(self, pause_on: set[int], pause: timedelta) -> None:
        self.pause_on, self.pause, self.calls = pause_on, pause, 0

    def decide(
        self, now: pd.Timestamp, *, remaining_work: timedelta, deadline: pd.Timestamp | None
    ) -> Decision:
        self.calls += 1
        if self.calls in self.pause_on:
            return Decision.pause_until(now + self.pause, f"test: dirty grid on call {self.calls}")
        return Decision.run("test: green")


def replay(speed: float) -> Replay:
    return Replay(GREEN, pd.Timestamp(datetime.now(UTC)), speed)


def artifacts_of(flow_run_id: UUID, *, as_published: bool = False) -> dict[str, Artifact]:
    """A run's artifacts by key; keys are prefix-<training id>-name, shown without the id unless `as_published`."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    keyed = {a.key: a for a in found if a.key is not None}
    return keyed if as_published else {re.sub(r"-[0-9a-f]{12}-", "-", k): a for k, a in keyed.items()}


def test_training_flow_publishes_report_epoch_table_and_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emitted_events: Callable[[], list[Event]]
) -> None:
    for name, value in replay(speed=60).to_env().items():
        monkeypatch.setenv(name, value)
    state = carbon_aware_training(
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path), strategy="none", deadline=DEADLINE,
        artifact_prefix="tiny-train", return_state=True,
    )  # fmt: skip
    assert state.is_completed()
    result: dict[str, Any] = state.result()  # type: ignore[assignment]
    report = result["report"]
    assert result["status"] == "completed" and result["steps_done"] == 3 * 16 and result["epoch"] == 3
    assert report["zone"] == "DE" and report["energy_kwh"] > 0 and report["emissions_g"] > 0

    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    found = artifacts_of(flow_run_id)
    assert set(found) == {"tiny-train-report", "tiny-train-epochs", "tiny-train-progress"}

    markdown = str(found["tiny-train-report"].data)
    assert found["tiny-train-report"].type == "markdown"
    assert "# Carbon-aware training report: DE" in markdown
    assert "- **status**: completed" in markdown and "- **steps done**: 48" in markdown
    shown = _report_table(markdown)  # every field of the report (the Airflow XCom report), read back
    energy, unit = shown["Energy"]  # rounded to 3 digits in a unit of its size
    assert unit == "Wh" and float(energy) == pytest.approx(report["energy_kwh"] * 1000, rel=5e-3)
    assert shown["Average intensity"] == (f"{report['avg_intensity']:.1f}", "gCO2eq/kWh")
    assert report["intensity_sources"] == ["electricitymaps-2023:lifecycle"]
    assert "| Intensity sources | electricitymaps-2023:lifecycle |  |" in markdown
    assert "| Grid zone | DE |  |" in markdown
    assert len(shown) == len(REPORT_ROWS) == len(report) - 1  # all but "unit", which the unit column says
    for name, label, unit in REPORT_ROWS:
        value, shown_unit = shown[label]
        expected, expected_unit = readable(report[name], unit)
        assert shown_unit == expected_unit and _same(value, expected), (name, value, report[name])

    table = found["tiny-train-epochs"]
    assert table.type == "table"
    rows = json.loads(str(table.data))
    assert [r["epoch"] for r in rows] == [0, 1, 2] and [r["steps"] for r in rows] == [16, 16, 16]
    assert list(rows[0])[:2] == ["epoch", "intensity source"]  # the source shows without scrolling
    assert all(r["intensity source"] == "electricitymaps-2023:lifecycle" for r in rows), rows
    assert sum(r["energy (Wh)"] for r in rows) == pytest.approx(report["energy_kwh"] * 1000, rel=0.05)
    assert sum(r["emissions (gCO2eq)"] for r in rows) == pytest.approx(report["emissions_g"], rel=0.05)
    for row in rows:  # 11:00-11:45 trace time at 60x: DE was at 155 gCO2eq/kWh
        assert row["intensity (gCO2eq/kWh)"] == pytest.approx(155.04, abs=0.5)
        wh_times_intensity = row["energy (Wh)"] * row["intensity (gCO2eq/kWh)"] / 1000
        assert row["emissions (gCO2eq)"] == pytest.approx(wh_times_intensity, rel=0.01)

    progress = found["tiny-train-progress"]
    assert progress.type == "progress" and float(str(progress.data)) == 100.0

    ended = [e for e in emitted_events() if e.event == events.RUN_ENDED]
    assert len(ended) == 1 and ended[0].payload["status"] == "completed"


def _report_table(markdown: str) -> dict[str, tuple[str, str]]:
    """label -> (value, unit) of the markdown report's field table."""
    lines = markdown.split("| field | value | unit |", 1)[1].strip().splitlines()[1:]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    return {label: (value, unit) for label, value, unit in cells}


def _same(shown: str, value: Any) -> bool:
    """Whether a report cell shows `value` (numbers to the 3 significant digits the report prints)."""
    if value is None or value == [] or value == {}:
        return shown == "–"
    if isinstance(value, bool | str):
        return shown == str(value)
    if isinstance(value, int | float):
        return float(shown) == pytest.approx(value, rel=5e-3)
    if isinstance(value, list):
        return shown.split(", ") == [str(v) for v in value]
    pairs = dict(item.split(": ") for item in shown.split(", "))
    return pairs.keys() == value.keys() and all(
        float(pairs[k]) == pytest.approx(v, rel=5e-3) for k, v in value.items()
    )


@flow
def train_objects(
    job: TrainingJob, strategy: PauseOnCalls | None, checkpoint_dir: str, speed: float
) -> TrainingOutcome:
    return train_carbon_aware(
        job, zone="DE", checkpoint_dir=checkpoint_dir, source=TraceProvider(replay=replay(speed)),
        strategy=strategy, deadline=DEADLINE, decision_refresh_seconds=0.0, artifact_prefix="objects",
    )  # fmt: skip


def test_paused_and_resumed_training_matches_uninterrupted(
    tmp_path: Path, emitted_events: Callable[[], list[Event]]
) -> None:
    straight = tiny_job()
    plain = train_objects(straight, None, str(tmp_path / "plain"), 600.0)
    paused_job = tiny_job()
    strategy = PauseOnCalls({3, 10, 25}, timedelta(minutes=2))  # 0.2 wall s each at 600x
    paused = train_objects(paused_job, strategy, str(tmp_path / "paused"), 600.0)

    assert plain.result.status == paused.result.status == "completed"
    assert paused.resumes == 3 and paused.result.report.pauses == 3
    assert paused.result.steps_done == plain.result.steps_done == 32
    for a, b in zip(
        straight.model.state_dict().values(), paused_job.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    pauses = [e for e in emitted_events() if e.event == events.PAUSE_STARTED]
    assert len(pauses) == 3
    assert all(p.payload["status"] == "paused" and p.payload["checkpoint_path"] for p in pauses)


@flow
def train_in_deployment(
    checkpoint_dir: str, resume_from: str | None = None, deadline: str | None = None
) -> Any:
    outcome = train_carbon_aware(
        tiny_job(), zone="DE", checkpoint_dir=checkpoint_dir, source=TraceProvider(replay=replay(60.0)),
        strategy=PauseOnCalls({2}, timedelta(hours=3)), deadline=deadline or DEADLINE,
        resume_from=resume_from, decision_refresh_seconds=0.0, max_in_process_pause="10s", artifact_prefix="dep",
    )  # fmt: skip
    return outcome.final_state() if outcome.rescheduled else outcome.to_dict()


def test_long_pause_in_a_deployment_reschedules_with_the_checkpoint(tmp_path: Path) -> None:
    deployment_id = deploy(train_in_deployment, "carbon-training-test")
    params = {"checkpoint_dir": str(tmp_path)}
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(deployment_id, parameters=params)
        state = run_flow(train_in_deployment, flow_run=flow_run, parameters=params, return_type="state")
        assert isinstance(state, State) and state.is_completed() and state.name == "Rescheduled"
        runs = client.read_flow_runs()
        (scheduled,) = [r for r in runs if r.deployment_id == deployment_id and r.id != flow_run.id]

    checkpoint = scheduled.parameters["resume_from"]
    assert Path(checkpoint).is_file() and Path(checkpoint).parents[2] == tmp_path  # <flow>/<training id>/
    assert scheduled.parameters["deadline"] == pd.Timestamp(DEADLINE).isoformat()
    assert scheduled.state is not None and scheduled.state.is_scheduled()
    # 3 trace hours at 60x: the resume is scheduled about 3 wall minutes out
    assert scheduled.expected_start_time is not None
    ahead = pd.Timestamp(scheduled.expected_start_time) - pd.Timestamp(datetime.now(UTC))
    assert pd.Timedelta(minutes=2) < ahead <= pd.Timedelta(minutes=3)
    report = str(artifacts_of(flow_run.id)["dep-report"].data)
    # the runner asks first after step 2 (step 1 is a warm-up, step 2 is timed): the second call pauses after 3
    assert "- **status**: rescheduled" in report and "- **steps done**: 3" in report


@flow
def train_in_own_flow(checkpoint_dir: str) -> Any:
    """A user's flow: it declares none of the parameters a rescheduled training run is handed."""
    outcome = train_carbon_aware(
        tiny_job(), zone="DE", checkpoint_dir=checkpoint_dir, strategy="threshold",
        options={"pause_above": 1.0, "resume_below": 0.5, "max_pause": "12h", "recheck": "3h"},
        within="20h", resume_overhead="0s", decision_refresh_seconds=0.0, max_in_process_pause="1s",
        artifact_prefix="own",
    )  # fmt: skip
    return outcome.final_state() if outcome.rescheduled else outcome.to_dict()


def test_training_in_a_users_flow_keeps_its_deadline_and_pause_clock_across_reschedules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without deadline/paused_since parameters to hand on, the tags carry them: the second run keeps the
    first run's deadline (a `within` does not restart) and the threshold's max-pause clock (always dirty)."""
    deployment_id = deploy(train_in_own_flow, "carbon-own-flow-test")
    params = {"checkpoint_dir": str(tmp_path)}
    for name, value in replay(3600.0).to_env().items():  # 3 grid hours of pause: 3 wall s, rescheduled
        monkeypatch.setenv(name, value)

    def run_and_next(flow_run: Any) -> Any:
        state = run_flow(train_in_own_flow, flow_run=flow_run, parameters=params, return_type="state")
        assert isinstance(state, State) and state.name == "Rescheduled", state
        with get_client(sync_client=True) as client:
            (scheduled,) = [
                r for r in client.read_flow_runs()
                if r.deployment_id == deployment_id and r.state is not None and r.state.is_scheduled()
            ]  # fmt: skip
        return scheduled

    def carried(tags: list[str]) -> tuple[set[str], set[str]]:
        return {t for t in tags if t.startswith("carbon-aware:deadline:")}, {
            t for t in tags if t.startswith("carbon-aware:paused-since:")
        }

    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(deployment_id, parameters=params)
    second = run_and_next(first)
    deadlines, pauses = carried(second.tags)
    assert len(deadlines) == 1 and len(pauses) == 1, second.tags
    third = run_and_next(second)
    assert carried(third.tags) == (deadlines, pauses), third.tags  # not a later deadline, not a new pause


def test_bad_job_and_strategy_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"job='nowhere:factory' cannot be imported"):
        train_carbon_aware.fn("nowhere:factory", zone="DE", checkpoint_dir=str(tmp_path))
    with pytest.raises(InvalidInputError, match="strategy='threshold' needs pause_above"):
        train_carbon_aware.fn(JOB, zone="DE", checkpoint_dir=str(tmp_path), strategy="threshold")


def test_opening_wait_plans_the_deadline_guards_upper_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window waited for before training is 1.1 x expected_duration long (wall time, as the guard reads
    it: at 3600x, 2 s are 2 grid hours) and ends by the deadline, as the guard's latest start assumes: a
    window planned on the bare estimate could start after it."""
    for name, value in Replay(NIGHT, pd.Timestamp(datetime.now(UTC)), 3600.0).to_env().items():
        monkeypatch.setenv(name, value)
    windows: list[WindowOutcome] = []

    def recording_wait(zone: str, **options: Any) -> WindowOutcome:
        windows.append(wait_for_low_carbon(zone, **options))
        return windows[-1]

    monkeypatch.setattr("carbon_flows.training.wait_for_low_carbon", recording_wait)
    # the clean morning (from 08:00) holds the window; 2 grid hours x 1.1 must end by 12:00
    deadline = "2023-06-02T12:00Z"
    result: dict[str, Any] = carbon_aware_training(  # type: ignore[assignment]
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path), strategy="none", deadline=deadline,
        expected_duration="2s", max_in_process_pause="1h",
    )  # fmt: skip
    (window,) = windows
    assert window.window_start is not None and window.window_end is not None, window
    assert window.window_end - window.window_start == timedelta(hours=2.2)
    assert window.window_start > NIGHT and window.window_end <= pd.Timestamp(deadline)
    assert result["status"] == "completed"


NIGHT = pd.Timestamp(
    "2023-06-02T01:00Z"
)  # DE above 250 gCO2eq/kWh until 07:00, below 200 from 08:00 to 15:00
THRESHOLD = {"strategy": "threshold", "pause_above": 250.0, "resume_below": 200.0, "max_pause": "8h"}


def test_threshold_deployment_pauses_reschedules_and_resumes_to_the_same_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example training flow as a deployment, with the real ThresholdStrategy on real replayed DE data.

    Dirty at the start: the first run trains two steps (a warm-up and a timed one), pauses by checkpoint for
    8 grid hours (a 4 s wall wait at 7200x, longer than `max_in_process_pause`) and schedules the next run;
    that run resumes from the checkpoint in the clean morning and completes with the same parameters as an
    uninterrupted run.
    """
    deployment_id = deploy(carbon_aware_training, "carbon-threshold-test", {"job": JOB})  # the allowed job
    params = {
        "job": JOB, "zone": "DE", "checkpoint_dir": str(tmp_path / "paused"), "deadline": DEADLINE,
        "strategy_options": {"recheck": "8h"}, "max_in_process_pause": "1s", "decision_refresh_seconds": 0.0,
        "resume_overhead": "1s", "artifact_prefix": "threshold", **THRESHOLD,
    }  # fmt: skip
    with get_client(sync_client=True) as client:
        first = client.create_flow_run_from_deployment(deployment_id, parameters=params)
        # The replay starts now, after the set-up: a slow deploy must not eat the dirty night.
        for name, value in Replay(NIGHT, pd.Timestamp(datetime.now(UTC)), 7200.0).to_env().items():
            monkeypatch.setenv(name, value)
        state = run_flow(carbon_aware_training, flow_run=first, parameters=params, return_type="state")
        assert isinstance(state, State) and state.is_completed() and state.name == "Rescheduled", state
        (second,) = [
            r for r in client.read_flow_runs() if r.deployment_id == deployment_id and r.id != first.id
        ]
        assert second.state is not None and second.state.is_scheduled()
        resume = second.parameters
        assert Path(resume["resume_from"]).parents[2] == tmp_path / "paused"  # <flow>/<training id>/
        assert resume["deadline"] == pd.Timestamp(DEADLINE).isoformat()
        paused_since = pd.Timestamp(resume["paused_since"])  # the strategy's max-pause clock travels along
        assert NIGHT <= paused_since < pd.Timestamp("2023-06-02T07:00Z")
        assert second.expected_start_time is not None
        wall_start = pd.Timestamp(second.expected_start_time)
        clock = Replay.from_env()
        assert clock is not None  # resumes when the 8 h pause ends (the strategy's recheck)
        assert abs(clock.trace_time(wall_start) - (paused_since + timedelta(hours=8))) < timedelta(minutes=1)
        first_report = str(artifacts_of(first.id)["threshold-report"].data)
        assert "- **status**: rescheduled" in first_report and "- **steps done**: 2" in first_report
        assert "intensity" in first_report and "above 250" in first_report

        while pd.Timestamp(datetime.now(UTC)) < wall_start:
            time.sleep(0.1)
        # From here grid time runs at a minute a second, continuing from the same grid moment: the morning
        # stays clean (below 200 until 15:00) however slowly a loaded machine trains the resumed run.
        now = pd.Timestamp(datetime.now(UTC))
        for name, value in Replay(clock.trace_time(now), now, 60.0).to_env().items():
            monkeypatch.setenv(name, value)
        final = run_flow(carbon_aware_training, flow_run=second, parameters=resume, return_type="state")
    assert isinstance(final, State) and final.is_completed() and final.name == "Completed", final
    resumed: dict[str, Any] = final.result()  # type: ignore[assignment]
    assert resumed["status"] == "completed" and resumed["steps_done"] == 48
    assert resumed["report"]["pauses"] == 1
    assert 7 * 3600 < resumed["report"]["paused_seconds"] < 10 * 3600  # grid seconds: 8 h of dirty grid
    assert (
        resumed["decision"]["action"] == "run"
        and "below the pause threshold" in resumed["decision"]["reason"]
    )

    straight: dict[str, Any] = carbon_aware_training(  # type: ignore[assignment]
        job=JOB, zone="DE", checkpoint_dir=str(tmp_path / "straight"), strategy="none", deadline=DEADLINE,
        artifact_prefix="straight",
    )  # fmt: skip
    _, paused_state = load_checkpoint(resumed["checkpoint_path"])
    _, straight_state = load_checkpoint(straight["checkpoint_path"])
    assert paused_state["user"]["model"].keys() == straight_state["user"]["model"].keys()
    for key, value in straight_state["user"]["model"].items():
        assert torch.equal(value, paused_state["user"]["model"][key]), key

    found = artifacts_of(second.id)
    # one training, one set of keys: the resumed run continues the first run's artifacts
    assert set(artifacts_of(second.id, as_published=True)) == set(artifacts_of(first.id, as_published=True))
    report = str(found["threshold-report"].data)
    assert "- **status**: completed" in report and "| Pauses | 1 |  |" in report
    rows = json.loads(str(found["threshold-epochs"].data))
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # trained after the resume, in the clean morning
    assert all(r["intensity (gCO2eq/kWh)"] < 200 for r in rows[1:])
    assert float(str(found["threshold-progress"].data)) == 100.0


@pytest.mark.parametrize(
    ("name", "options", "kind", "attrs"),
    [
        ("threshold", {"pause_above": 300, "resume_below": 250, "max_pause": "2h"}, "ThresholdStrategy",
         {"max_pause": pd.Timedelta(hours=2), "recheck": pd.Timedelta(minutes=15)}),
        ("adaptive", {"percentile": 30, "days": 7, "recheck": "45min"}, "AdaptiveStrategy",
         {"percentile": 30, "window": pd.Timedelta(days=7), "recheck": pd.Timedelta(minutes=45)}),
        ("forecast-window", {"min_chunk": "30min"}, "ForecastWindowStrategy",
         {"min_chunk": pd.Timedelta(minutes=30), "horizon": pd.Timedelta(hours=48)}),
    ],
)  # fmt: skip
def test_named_strategies_are_the_core_ones_with_json_options(
    name: str, options: dict[str, Any], kind: str, attrs: dict[str, Any]
) -> None:
    source = TraceProvider()
    built = build_strategy(name, source, "DE", options)
    assert type(built).__name__ == kind and type(built).__module__ == "carbon_sensors.strategies"
    assert built is not None and vars(built)["zone"] == "DE" and vars(built)["source"] is source
    for attr, value in attrs.items():
        assert vars(built)[attr] == value, attr


def test_strategy_decides_on_real_data_in_the_flow_clock() -> None:
    strategy = build_strategy("threshold", TraceProvider(), "DE", strategy_options_for("threshold",
                              pause_above=250.0, resume_below=200.0))  # fmt: skip
    assert strategy is not None
    dirty = strategy.decide(
        pd.Timestamp("2023-06-02T05:30Z"), remaining_work=timedelta(hours=1), deadline=None
    )
    assert dirty.action == "pause" and dirty.until == pd.Timestamp("2023-06-02T05:45Z")
    clean = strategy.decide(
        pd.Timestamp("2023-06-02T08:30Z"), remaining_work=timedelta(hours=1), deadline=None
    )
    assert clean.action == "run" and clean.intensity == pytest.approx(190.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("adaptive", {"percentile": 30}, r"strategy='adaptive' needs days="),
        ("adaptive", {"percentile": 30, "days": 7, "max_pause": "1h"}, r"does not take \['max_pause'\]"),
        ("forecast-window", {"min_chunk": "soon"}, r"min_chunk='soon' is not a duration"),
        ("threshold", {"pause_above": 200, "resume_below": 250, "max_pause": "1h"}, r"resume_below=250"),
        ("none", {"percentile": 30}, r"strategy='none' takes no options"),
        ("greedy", {}, r"strategy='greedy' is not valid; use one of \['none', 'threshold'"),
    ],
)
def test_bad_strategy_options_are_clear_errors(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_strategy(name, TraceProvider(), "DE", options)


def test_threshold_shortcuts_belong_to_threshold_only() -> None:
    assert strategy_options_for("threshold", pause_above=1.0, resume_below=0.5) == {
        "pause_above": 1.0, "resume_below": 0.5, "max_pause": "6h",
    }  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"\['pause_above'\] apply to strategy='threshold' only"):
        strategy_options_for("adaptive", pause_above=300.0, extra={"percentile": 30, "days": 7})
    with pytest.raises(InvalidInputError, match=r"strategy_options must be a mapping .* got the list"):
        strategy_options_for("adaptive", extra=["percentile", 30])  # type: ignore[arg-type]


def test_training_bad_zone_fails_before_training_and_a_late_run_trains_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in replay(speed=1.0).to_env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UnknownZoneError, match=r"zone 'DX'"):
        train_carbon_aware.fn(
            JOB, zone="DX", checkpoint_dir=str(tmp_path), strategy="none", deadline=DEADLINE
        )
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
    # B4: a rescheduled run that starts after its deadline raised InvalidInputError instead of training
    late = train_carbon_aware.fn(
        JOB, zone="DE", checkpoint_dir=str(tmp_path), strategy="threshold", deadline="2023-06-02T10:00Z",
        options={"pause_above": 0.0, "resume_below": 0.0, "max_pause": "6h"}, decision_refresh_seconds=0.0,
    )  # fmt: skip
    assert late.result.status == "completed" and not late.rescheduled
    assert late.result.decision is not None and "running at once (late run)" in late.result.decision.reason
