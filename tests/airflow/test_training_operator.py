"""CarbonAwareTrainingOperator without a database: pause -> defer -> resume, bad input, on_kill, storage."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from airflow_fixtures import ReplayAt
from airflow_training_jobs import DirtyWindow, broken_builder, tiny_job

from carbon_operators.training import CarbonAwareTrainingOperator, TrainingCallableError
from carbon_operators.triggers import ResumeAtTrigger
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.timeutil import utcnow

NO_CONTEXT: Any = {}
DIRTY = {"start": "2023-06-05T16:00Z", "end": "2023-06-06T09:00Z"}


def paused_state(deferred: TaskDeferred) -> dict[str, Any]:
    trigger = deferred.trigger
    assert isinstance(trigger, ResumeAtTrigger)
    assert deferred.method_name == "execute_complete"
    return dict(trigger.state)


def woken(state: dict[str, Any]) -> dict[str, Any]:
    """The event a ResumeAtTrigger fires (what the task is resumed with)."""
    return {"moment": "2026-01-01T00:00:00+00:00", "state": state}


def operator(tmp_path: Path, **kwargs: Any) -> CarbonAwareTrainingOperator:
    settings: dict[str, Any] = {
        "task_id": "train",
        "training_callable": tiny_job,
        "zone": "DE",
        "strategy": DirtyWindow,
        "strategy_kwargs": DIRTY,
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "deadline": "2023-06-07T00:00Z",
        "decision_refresh_seconds": 0.0,
    }
    settings.update(kwargs)
    return CarbonAwareTrainingOperator(**settings)


def test_pauses_defers_and_resumes_from_the_checkpoint(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay = replay_at("2023-06-05T17:00Z")  # inside the dirty window: pause after the first step
    op = operator(tmp_path)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(NO_CONTEXT)
    state = paused_state(deferred.value)
    assert isinstance(deferred.value.trigger, ResumeAtTrigger)
    assert deferred.value.trigger.moment == replay.wall_time(pd.Timestamp(DIRTY["end"]))
    kwargs = state
    assert kwargs["deferrals"] == 1
    assert Path(kwargs["checkpoint_path"]).is_file()
    assert Path(kwargs["checkpoint_path"]).parent == tmp_path / "ckpt" / "dag" / "manual" / "train"
    wall_deadline = replay.wall_time(pd.Timestamp("2023-06-07T00:00Z"))
    timeout = deferred.value.timeout
    assert type(timeout) is timedelta  # msgpack (task -> supervisor) refuses pandas.Timedelta
    assert abs((timeout - (wall_deadline - utcnow() + timedelta(minutes=5))).total_seconds()) < 5

    replay_at(
        "2023-06-06T09:30Z"
    )  # the window has passed: a fresh operator object resumes (as a worker would)
    result = operator(tmp_path).execute_complete(NO_CONTEXT, event=woken(state))
    assert result["status"] == "completed"
    assert result["steps_done"] == 16  # 2 epochs x 8 batches, none lost or repeated
    assert result["epoch"] == 2
    assert result["deferrals"] == 1
    report = result["report"]
    assert report["zone"] == "DE"
    assert report["pauses"] == 1
    assert report["paused_seconds"] > 0
    assert report["energy_kwh"] > 0
    assert report["energy_kwh_with_pue"] == pytest.approx(report["energy_kwh"])
    assert report["emissions_g"] > 0
    assert report["intensity_sources"]


def test_a_wake_inside_the_dirty_window_defers_again_without_building_the_job(
    tmp_path: Path, replay_at: ReplayAt
) -> None:
    replay_at("2023-06-05T17:00Z")
    with pytest.raises(TaskDeferred) as first:
        operator(tmp_path).execute(NO_CONTEXT)
    state = paused_state(first.value)
    assert state["work"]["expected_seconds"] > 0  # 15 steps left, at the measured grid seconds per step
    replay_at("2023-06-05T20:00Z")  # woken early (still dirty): a builder that raises proves no job is built
    with pytest.raises(TaskDeferred) as again:
        operator(tmp_path, training_callable=broken_builder).execute_complete(NO_CONTEXT, event=woken(state))
    assert paused_state(again.value) == {**state, "deferrals": 2}


def test_runs_straight_through_on_a_clean_grid(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T10:00Z")
    result = operator(tmp_path, pue=1.2).execute(NO_CONTEXT)
    assert result["status"] == "completed"
    assert result["deferrals"] == 0
    assert result["report"]["pauses"] == 0
    assert result["report"]["energy_kwh_with_pue"] == pytest.approx(1.2 * result["report"]["energy_kwh"])


def test_object_storage_checkpoints_travel_as_urls(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T17:00Z")
    store = (tmp_path / "bucket").as_uri()
    with pytest.raises(TaskDeferred) as deferred:
        operator(tmp_path, checkpoint_dir=store).execute(NO_CONTEXT)
    state = paused_state(deferred.value)
    assert state["checkpoint_path"].startswith("file://")
    assert any((tmp_path / "bucket").glob("dag/manual/train/checkpoint-*.pt"))
    replay_at("2023-06-06T09:30Z")
    result = operator(tmp_path, checkpoint_dir=store).execute_complete(NO_CONTEXT, event=woken(state))
    assert result["status"] == "completed"
    assert result["checkpoint_path"].startswith(store)


def test_on_kill_stops_training_with_a_checkpoint(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T10:00Z")
    op = operator(tmp_path, op_kwargs={"epochs": 100_000})
    threading.Timer(1.0, op.on_kill).start()
    with pytest.raises(AirflowException, match="training stopped at step"):
        op.execute(NO_CONTEXT)
    assert any((tmp_path / "ckpt").glob("dag/manual/train/checkpoint-*.pt"))


def test_a_raising_training_callable_fails_with_its_error(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T10:00Z")
    with pytest.raises(
        TrainingCallableError, match="broken_builder raised FileNotFoundError: no such dataset"
    ):
        operator(tmp_path, training_callable=broken_builder).execute(NO_CONTEXT)


def test_a_raising_training_step_fails_with_its_error(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T10:00Z")
    with pytest.raises(TrainingCallableError, match="failed at step 2 with RuntimeError: CUDA-like failure"):
        operator(tmp_path, op_kwargs={"fail_at_step": 3}).execute(NO_CONTEXT)


def test_resuming_without_pause_state_is_refused(tmp_path: Path, replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T10:00Z")
    with pytest.raises(InvalidInputError, match="carries no pause state"):
        operator(tmp_path).execute_complete(NO_CONTEXT, event={"moment": "2026-01-01T00:00:00+00:00"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"zone": "XX-NOWHERE"}, "zone 'XX-NOWHERE' is not known"),
        ({"carbon_conn_id": "no_such_carbon_conn"}, "no_such_carbon_conn"),
        ({"strategy": "psychic"}, "strategy='psychic' is not valid"),
        ({"training_callable": lambda: "not a job"}, "it must return a TrainingJob"),
    ],
)
def test_bad_input_fails_the_task_with_a_clear_message(
    tmp_path: Path, replay_at: ReplayAt, settings: dict[str, Any], message: str
) -> None:
    replay_at("2023-06-05T10:00Z")
    with pytest.raises(AirflowFailException, match=message):
        operator(tmp_path, **settings).execute(NO_CONTEXT)


def test_a_woken_factory_strategy_cannot_hold_past_the_deadline(tmp_path: Path, replay_at: ReplayAt) -> None:
    """B4: the factory says dirty until 09:00, the deadline is 00:00: the wake after the latest start trains."""
    replay_at("2023-06-05T17:00Z")
    deadline = pd.Timestamp("2023-06-06T00:00Z")
    with pytest.raises(TaskDeferred) as first:
        operator(tmp_path, deadline=deadline.isoformat()).execute(NO_CONTEXT)
    state = paused_state(first.value)
    latest = pd.Timestamp(state["guard"]["run_from"])  # the hold was cut to the latest start
    assert deadline - timedelta(minutes=10) < latest < deadline - timedelta(minutes=2)
    replay_at((latest + timedelta(seconds=30)).isoformat())  # the scheduler woke it a little late
    result = operator(tmp_path, deadline=deadline.isoformat()).execute_complete(
        NO_CONTEXT, event=woken(state)
    )
    assert result["status"] == "completed" and result["steps_done"] == 16
    assert pd.Timestamp(result["report"]["finished_at"]) <= deadline
    assert result["decision"]["reason"].startswith("deadline guard:")


def test_a_late_run_trains_at_once(
    tmp_path: Path, replay_at: ReplayAt, caplog: pytest.LogCaptureFixture
) -> None:
    """A rerun after its deadline (inside the dirty window) trains at once and says so, instead of failing."""
    replay_at("2023-06-05T17:00Z")
    result = operator(tmp_path, deadline="2023-06-05T16:00Z").execute(NO_CONTEXT)
    assert result["status"] == "completed" and result["deferrals"] == 0
    assert "running at once (late run)" in result["decision"]["reason"]
    assert "the deadline 2023-06-05T16:00:00+00:00 passed 1:00:00 ago; running at once" in caplog.text


def test_on_outage_is_accepted_and_mapped_to_the_strategy(tmp_path: Path, replay_at: ReplayAt) -> None:
    """B8: the operator took no on_outage although the README lists it; 'closed' pauses a built-in strategy."""
    replay_at("2023-06-05T10:00Z")
    threshold = {"pause_above": 1000.0, "resume_below": 900.0, "max_pause": "2h"}
    op = operator(tmp_path, strategy="threshold", strategy_kwargs=threshold, on_outage="closed")
    _, strategy = op._setting(NO_CONTEXT, paused_since=None)
    assert getattr(strategy, "on_error", None) == "pause"
    assert op.execute(NO_CONTEXT)["status"] == "completed"
    with pytest.raises(AirflowFailException, match="on_outage='ajar' is not valid"):
        operator(tmp_path, strategy="threshold", strategy_kwargs=threshold, on_outage="ajar").execute(
            NO_CONTEXT
        )
    both = {**threshold, "on_error": "run"}
    with pytest.raises(AirflowFailException, match="not both"):
        operator(tmp_path, strategy="threshold", strategy_kwargs=both, on_outage="open").execute(NO_CONTEXT)


@pytest.mark.parametrize("given", [["x"], "percentile=30"])
def test_strategy_kwargs_that_are_no_mapping_are_refused_naming_them(tmp_path: Path, given: Any) -> None:
    """Were a raw ValueError from dict() when the DAG file was parsed."""
    with pytest.raises(
        InvalidInputError, match=r"strategy_kwargs must be a mapping \(a JSON object\).*got the"
    ):
        operator(tmp_path, strategy="adaptive", strategy_kwargs=given)
