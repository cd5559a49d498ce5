"""CarbonWindowOperator without a database: the replay clock survives its deferral."""

from __future__ import annotations

import asyncio
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from carbon_operators.triggers import ResumeAtTrigger
from carbon_operators.window import CarbonWindowOperator
from carbon_sensors.replay import ENV_SPEED, ENV_START, ENV_WALL_START

NO_CONTEXT: Any = {}


def fire(trigger: ResumeAtTrigger) -> dict[str, Any]:
    """Run the real trigger to its moment; the event the task is resumed with."""

    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), 30))


def test_a_resumed_hold_keeps_the_replay_epoch_of_the_process_that_deferred_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Replay without a wall start: the resumed task (another process on a real deployment) must not restart
    the replay clock, or it wakes at the dirty morning again and holds again, run after run."""
    monkeypatch.setenv(ENV_START, "2023-06-02T09:00Z")  # DE: the day's low comes at 11:00-13:00
    monkeypatch.setenv(ENV_SPEED, "3600")  # a trace hour a wall second
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    monkeypatch.setenv("CARBON_AWARE_TRACE_FORECAST", "perfect")  # a known window, asked for by name
    hold = CarbonWindowOperator(  # at 3600x the default 2 min wake-up margin would be 120 grid hours
        task_id="hold", zone="DE", duration="1h", deadline="2023-06-02T16:00Z", resume_overhead="1s"
    )
    with pytest.raises(TaskDeferred) as deferred:
        hold.execute(NO_CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ResumeAtTrigger)
    window_start = pd.Timestamp(trigger.state["plan"]["start"])
    assert window_start >= pd.Timestamp("2023-06-02T11:00Z")
    assert trigger.replay[ENV_WALL_START]  # the epoch this process fixed travels with the deferral
    event = fire(trigger)
    monkeypatch.delenv(ENV_WALL_START)  # a new worker process: it inherits no epoch
    released = hold.execute_complete(NO_CONTEXT, event=event)
    assert released["status"] == "released" and released["replans"] == 0
    assert pd.Timestamp(released["released_at"]) >= window_start


def test_a_window_saving_less_than_min_savings_runs_at_once_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduced: the hold waited 22 trace hours for a 4.1% saving; below `min_savings` it now runs at once."""
    monkeypatch.setenv(ENV_START, "2023-06-02T09:00Z")  # the best window (11:00 on) saves well under 99%
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    hold = CarbonWindowOperator(
        task_id="hold", zone="DE", duration="1h", deadline="2023-06-02T16:00Z", min_savings=99
    )
    released = hold.execute(NO_CONTEXT)  # no TaskDeferred: not worth holding
    assert released["status"] == "released" and released["min_savings"] == 99
    assert "less than min_savings=99%: running now" in released["reason"]
    assert released["savings_pct"] is not None and 0 < released["savings_pct"] < 99
    with pytest.raises(AirflowFailException, match=r"min_savings=120 is not valid"):
        CarbonWindowOperator(task_id="bad", zone="DE", duration="1h", min_savings=120).execute(NO_CONTEXT)


@pytest.mark.parametrize(
    ("overhead", "latest_end"), [("1s", "2023-06-02T12:59:59Z"), ("1h", "2023-06-02T12:00Z")]
)
def test_the_window_ends_resume_overhead_before_the_deadline(
    monkeypatch: pytest.MonkeyPatch, overhead: str, latest_end: str
) -> None:
    """The wake-up (triggerer, scheduler, worker pick-up) takes time: a window that ends exactly at the deadline
    would make the held task late by that much. DE's low on 2023-06-02 is 11:00-13:00; with a 1 h overhead the
    plan must end by 12:00, and with a 1 s one it ends a second before the deadline (so the margin is what moves it)."""
    monkeypatch.setenv(ENV_START, "2023-06-02T09:00Z")  # speed 1: grid time is wall time
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    monkeypatch.setenv("CARBON_AWARE_TRACE_FORECAST", "perfect")
    hold = CarbonWindowOperator(
        task_id="hold",
        zone="DE",
        duration="2h",
        deadline="2023-06-02T13:00Z",
        min_savings=0,
        resume_overhead=overhead,
    )
    with pytest.raises(TaskDeferred) as deferred:
        hold.execute(NO_CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ResumeAtTrigger)
    assert pd.Timestamp(trigger.state["plan"]["end"]) == pd.Timestamp(latest_end)


def test_an_earliest_start_inside_the_wake_up_margin_still_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reproduced: 1 h of work from an 11:30 earliest start fits a 13:00 deadline, but not the 1 h margin before
    it; the hold failed with 'does not fit' instead of planning the one window that does (11:30-12:30)."""
    monkeypatch.setenv(ENV_START, "2023-06-02T09:00Z")  # speed 1: grid time is wall time
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    monkeypatch.setenv("CARBON_AWARE_TRACE_FORECAST", "perfect")
    hold = CarbonWindowOperator(
        task_id="hold", zone="DE", duration="1h", deadline="2023-06-02T13:00Z",
        earliest_start="2023-06-02T11:30Z", min_savings=0, resume_overhead="1h",
    )  # fmt: skip
    with pytest.raises(TaskDeferred) as deferred:
        hold.execute(NO_CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, ResumeAtTrigger)
    plan = trigger.state["plan"]
    assert (pd.Timestamp(plan["start"]), pd.Timestamp(plan["end"])) == (
        pd.Timestamp("2023-06-02T11:30Z"),
        pd.Timestamp("2023-06-02T12:30Z"),
    )


def test_a_hold_woken_after_max_replans_releases_with_the_window_it_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Woken at 05:00 with DE's low still ahead at 11:00: with a re-plan left it holds again; with none it runs
    at the window it woke at (the Prefect wait has the same cap)."""
    monkeypatch.setenv(ENV_START, "2023-06-02T05:00Z")
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    monkeypatch.setenv("CARBON_AWARE_TRACE_FORECAST", "perfect")
    hold = CarbonWindowOperator(
        task_id="hold", zone="DE", duration="1h", deadline="2023-06-02T16:00Z", max_replans=1
    )
    waited = {"zone": "DE", "start": "2023-06-02T05:00:00+00:00", "reason": "the window it waited for"}
    with pytest.raises(TaskDeferred) as deferred:
        hold.execute_complete(NO_CONTEXT, event={"state": {"plan": waited, "replans": 0}})
    assert isinstance(deferred.value.trigger, ResumeAtTrigger)
    assert deferred.value.trigger.state["replans"] == 1
    released = hold.execute_complete(NO_CONTEXT, event={"state": {"plan": waited, "replans": 1}})
    assert released["status"] == "released" and released["replans"] == 1
    assert released["reason"] == "the window it waited for"
    with pytest.raises(AirflowFailException, match=r"max_replans='3' is not valid"):
        CarbonWindowOperator(task_id="bad", zone="DE", duration="1h", max_replans="3").execute(NO_CONTEXT)  # type: ignore[arg-type]


def test_a_window_never_starts_before_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reproduced: mid-hour, the plan could begin at the top of the hour (the forecast's first hour), in the
    past: the task ran at once and reported that past hour as its window and its intensity."""
    monkeypatch.setenv(ENV_START, "2023-06-02T13:40Z")  # DE: 13:00-14:00 ends the day's low
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    monkeypatch.setenv("CARBON_AWARE_TRACE_FORECAST", "perfect")
    hold = CarbonWindowOperator(
        task_id="hold", zone="DE", duration="1h", deadline="2023-06-02T20:00Z", resume_overhead="1s"
    )
    try:
        planned = hold.execute(NO_CONTEXT)
    except TaskDeferred as deferred:
        assert isinstance(deferred.trigger, ResumeAtTrigger)
        planned = deferred.trigger.state["plan"]
    assert pd.Timestamp(planned["start"]) >= pd.Timestamp("2023-06-02T13:40Z"), planned
