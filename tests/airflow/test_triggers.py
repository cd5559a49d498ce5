"""CarbonIntensityTrigger: serialisation round-trip and every event it can fire, on real recorded data."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta
from typing import Any

import pytest
from airflow.triggers.base import BaseTrigger
from airflow_fixtures import ReplayAt

from carbon_operators.triggers import CarbonIntensityTrigger, ResumeAtTrigger
from carbon_sensors.timeutil import utcnow


def first_event(trigger: BaseTrigger, timeout: float = 20.0) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout))


def in_seconds(seconds: float) -> str:
    return (utcnow() + timedelta(seconds=seconds)).isoformat()


def test_serialize_round_trips_through_the_import_path() -> None:
    trigger = CarbonIntensityTrigger(
        zone="DE",
        max_intensity=250,
        deadline="2030-01-01T00:00:00+00:00",
        poll_seconds=60,
        carbon_conn_id="c",
    )
    path, kwargs = trigger.serialize()
    assert path == "carbon_operators.triggers.CarbonIntensityTrigger"
    assert all(isinstance(v, str | int | float | dict | type(None)) for v in kwargs.values())
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert kwargs["max_intensity"] == 250.0


def test_resume_trigger_round_trips_and_hands_its_state_back() -> None:
    state = {"checkpoint_path": "/ckpt/checkpoint-0000000320.pt", "deferrals": 2, "paused_since": None}
    moment = utcnow() + timedelta(seconds=0.2)
    trigger = ResumeAtTrigger(moment.to_pydatetime(), state=state)
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs)
    event = first_event(again)
    assert event == {"moment": moment.isoformat(), "state": state, "replay": {}}  # replay off here
    assert utcnow() >= moment


def test_fires_green_when_the_replayed_grid_drops_below_the_threshold(replay_at: ReplayAt) -> None:
    # DE 2023-06-05 (Electricity Maps): 06:00 291.35, 07:00 257.01 gCO2eq/kWh; one trace hour per 0.5 s.
    replay_at("2023-06-05T06:30Z", speed=7200)
    trigger = CarbonIntensityTrigger(zone="DE", max_intensity=260, deadline=in_seconds(30), poll_seconds=0.1)
    event = first_event(trigger)
    assert event["status"] == "green"
    assert event["reading"]["value"] == pytest.approx(257.01)
    assert event["reading"]["period_start"] == "2023-06-05T07:00:00+00:00"
    assert event["polls"] >= 2  # the first poll saw 291.35


def test_fires_deadline_when_the_grid_stays_dirty(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T18:00Z", speed=60)
    trigger = CarbonIntensityTrigger(zone="DE", max_intensity=50, deadline=in_seconds(0.4), poll_seconds=0.1)
    event = first_event(trigger)
    assert event["status"] == "deadline"
    assert event["polls"] >= 1
    assert "deadline" in event["message"]


def test_missing_connection_fires_error_at_once() -> None:
    trigger = CarbonIntensityTrigger(
        zone="DE", max_intensity=250, deadline=in_seconds(30), carbon_conn_id="no_such_carbon_conn"
    )
    event = first_event(trigger)
    assert event["status"] == "error"
    assert "no_such_carbon_conn" in event["message"]
    assert event["polls"] == 0


def test_unknown_zone_is_not_retried(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T06:00Z")
    trigger = CarbonIntensityTrigger(
        zone="XX-NOWHERE", max_intensity=250, deadline=in_seconds(30), poll_seconds=0.1
    )
    event = first_event(trigger)
    assert event["status"] == "error"
    assert "XX-NOWHERE" in event["message"]
    assert event["polls"] == 1


def test_failed_polls_are_retried_then_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CARBON_AWARE_REPLAY_START", "CARBON_AWARE_REPLAY_WALL_START"):
        monkeypatch.delenv(name, raising=False)
    # Without replay a trace has no "now": every poll fails with NoDataError (a transient error).
    trigger = CarbonIntensityTrigger(
        zone="DE", max_intensity=250, deadline=in_seconds(30), poll_seconds=0.01, max_errors=3
    )
    event = first_event(trigger)
    assert event["status"] == "error"
    assert event["polls"] == 3
    assert "3 polls in a row failed" in event["message"]
