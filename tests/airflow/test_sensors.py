"""CarbonIntensitySensor without a database: deferral, poke mode, every resume path and bad input."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from airflow_fixtures import DefineConnection, ReplayAt
from pytest_httpserver import HTTPServer

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.triggers import CarbonIntensityTrigger
from carbon_sensors import embedded
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.replay import Replay
from carbon_sensors.timeutil import utcnow

NO_CONTEXT: Any = {}
UK_500 = Path(__file__).resolve().parents[1] / "fixtures" / "api" / "uk-carbonintensity" / "error_500.json"


def sensor(**kwargs: Any) -> CarbonIntensitySensor:
    settings: dict[str, Any] = {"task_id": "green", "zone": "DE", "max_intensity": 250.0, "deferrable": True}
    settings.update(kwargs)
    return CarbonIntensitySensor(**settings)


def test_defers_on_a_dirty_grid_with_the_trigger_and_a_deadline_bound_timeout(replay_at: ReplayAt) -> None:
    replay = replay_at("2023-06-05T04:00Z", speed=3600)  # DE 337.31 gCO2eq/kWh
    deadline = "2023-06-05T20:00:00+00:00"
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deadline=deadline, poke_interval=2).execute(NO_CONTEXT)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonIntensityTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    wall_deadline = replay.wall_time(pd.Timestamp(deadline))
    assert kwargs == {
        "zone": "DE",
        "max_intensity": 250.0,
        "deadline": wall_deadline.isoformat(),
        "poll_seconds": 2.0,
        "carbon_conn_id": None,
        "max_errors": 3,
        "replay": Replay(replay.trace_start, replay.wall_start, float(replay.speed)).to_env(),
    }  # replay: the triggerer and the resumed task run on this task's clock
    timeout = deferred.value.timeout
    assert type(timeout) is timedelta  # msgpack (task -> supervisor) refuses pandas.Timedelta
    expected = wall_deadline - utcnow() + timedelta(minutes=5)  # 16 trace hours = 16 s wall, plus the margin
    assert abs((timeout - expected).total_seconds()) < 2


def test_a_deadline_beyond_airflows_default_sensor_timeout_bounds_the_deferral(replay_at: ReplayAt) -> None:
    """Was min(7 days, ...): a deadline 8 days out ended in a sensor timeout, not in on_deadline."""
    replay = replay_at("2023-06-05T04:00Z")  # DE 337.31, real time
    deadline = "2023-06-13T04:00:00+00:00"
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deadline=deadline).execute(NO_CONTEXT)
    expected = replay.wall_time(pd.Timestamp(deadline)) - utcnow() + timedelta(minutes=5)
    assert abs((deferred.value.timeout - expected).total_seconds()) < 2


def test_poke_mode_waits_past_the_default_sensor_timeout_until_the_deadline(
    replay_at: ReplayAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__SENSORS__DEFAULT_TIMEOUT", "0.2")  # Airflow's 7 days, shorter than the wait
    replay_at("2023-06-05T04:00Z", speed=3600)  # dirty until the deadline, one wall second away
    result = sensor(deferrable=False, poke_interval=0.1, deadline="2023-06-05T05:00Z").execute(NO_CONTEXT)
    assert result["status"] == "deadline"  # was AirflowSensorTimeout after 0.2 s


def test_an_explicit_shorter_timeout_still_ends_the_wait(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")  # DE 337.31, real time: the deadline is hours away
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deadline="2023-06-05T20:00Z", timeout=3600).execute(NO_CONTEXT)
    assert deferred.value.timeout == timedelta(hours=1)
    with pytest.raises(AirflowSensorTimeout, match=r"exceeds the specified timeout of 0\.2"):
        sensor(deferrable=False, poke_interval=0.1, timeout=0.2, deadline="2023-06-05T20:00Z").execute(
            NO_CONTEXT
        )


def test_a_green_grid_releases_at_once_without_deferring(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T11:00Z")  # DE 186.18
    result = sensor().execute(NO_CONTEXT)
    assert result["status"] == "green"
    assert result["reading"]["value"] == pytest.approx(186.18)
    assert result["threshold"] == 250.0


def test_poke_mode_waits_in_process_until_green(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T07:30Z", speed=7200)  # 257.01 now, 225.41 half a second later
    result = sensor(deferrable=False, mode="poke", poke_interval=0.1).execute(NO_CONTEXT)
    assert result["status"] == "green"
    assert result["reading"]["value"] == pytest.approx(225.41)


def test_percentile_threshold_comes_from_recent_history(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T11:00Z")
    result = sensor(max_intensity=None, percentile=30, history_days=7).execute(NO_CONTEXT)
    week = embedded.load("DE").values["2023-05-29T11:00Z":"2023-06-05T10:00Z"]
    assert result["threshold"] == pytest.approx(week.quantile(0.30))
    assert result["status"] == "green"  # 186.18 is far below the week's 30th percentile


def test_templated_thresholds_rendered_to_strings_are_read(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T11:00Z")
    assert sensor(max_intensity="250").execute(NO_CONTEXT)["threshold"] == 250.0
    by_percentile = sensor(max_intensity=None, percentile="30", history_days="7").execute(NO_CONTEXT)
    week = embedded.load("DE").values["2023-05-29T11:00Z":"2023-06-05T10:00Z"]
    assert by_percentile["threshold"] == pytest.approx(week.quantile(0.30))  # history_days="7": a TypeError


def test_percentile_and_history_days_are_templated(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T11:00Z")
    op = sensor(max_intensity=None, percentile="{{ params.p }}", history_days="{{ params.days }}")
    rendering: Any = {"params": {"p": 30, "days": 7}}
    op.render_template_fields(rendering)  # as the worker does before execute: both render to strings
    week = embedded.load("DE").values["2023-05-29T11:00Z":"2023-06-05T10:00Z"]
    assert op.execute(NO_CONTEXT)["threshold"] == pytest.approx(week.quantile(0.30))


@pytest.fixture
def dead_uk_conn(httpserver: HTTPServer, carbon_conn: DefineConnection) -> str:
    """A NESO connection whose every answer is the recorded HTTP 500 (after the transport's retries)."""
    shared_cache().clear()
    httpserver.expect_request(re.compile(".*")).respond_with_data(UK_500.read_text(), status=500)
    return carbon_conn("carbon_uk_dead", provider="uk", host=httpserver.url_for("/"))


def test_percentile_history_outage_fails_open_by_default(dead_uk_conn: str) -> None:
    """The history was read outside the outage handling: a dead endpoint raised ProviderUnavailableError."""
    result = sensor(zone="GB", max_intensity=None, percentile=30, carbon_conn_id=dead_uk_conn).execute(
        NO_CONTEXT
    )
    assert result["status"] == "error" and "HTTP 500" in result["message"]
    assert result["threshold"] is None  # never known: no history came


def test_percentile_history_outage_fails_closed_when_asked(dead_uk_conn: str) -> None:
    with pytest.raises(AirflowFailException, match=r"HTTP 500.*on_outage='closed'"):
        sensor(
            zone="GB", max_intensity=None, percentile=30, carbon_conn_id=dead_uk_conn, on_outage="closed"
        ).execute(NO_CONTEXT)


def event(status: str, **facts: Any) -> dict[str, Any]:
    return {"status": status, "zone": "DE", "threshold": 250.0, "polls": 3, **facts}


def test_execute_complete_green_returns_the_reading(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")
    reading = {"zone": "DE", "value": 225.41}
    result = sensor().execute_complete(NO_CONTEXT, event("green", reading=reading))
    assert result["status"] == "green"
    assert result["reading"] == reading


def test_execute_complete_deadline_runs_by_default(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")
    result = sensor().execute_complete(NO_CONTEXT, event("deadline", message="deadline reached"))
    assert result["status"] == "deadline"


@pytest.mark.parametrize(
    ("policy", "error"), [("fail", AirflowFailException), ("skip", AirflowSkipException)]
)
def test_execute_complete_deadline_follows_the_policy(
    replay_at: ReplayAt, policy: str, error: type[Exception]
) -> None:
    replay_at("2023-06-05T04:00Z")
    with pytest.raises(error, match=f"on_deadline='{policy}'"):
        sensor(on_deadline=policy).execute_complete(NO_CONTEXT, event("deadline", message="deadline reached"))


def test_execute_complete_error_fails_open_by_default_and_says_so(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")
    result = sensor().execute_complete(NO_CONTEXT, event("error", message="electricitymaps: HTTP 503"))
    assert result["status"] == "error"
    assert result["message"] == "electricitymaps: HTTP 503"


def test_execute_complete_error_fails_closed_when_asked(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")
    with pytest.raises(AirflowFailException, match=r"HTTP 503.*on_outage='closed'"):
        sensor(on_outage="closed").execute_complete(NO_CONTEXT, event("error", message="HTTP 503"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"zone": "XX-NOWHERE"}, "zone 'XX-NOWHERE' is not known"),
        ({"max_intensity": -5.0}, r"max_intensity=-5.0 gCO2eq/kWh must be 0 or more"),
        ({"carbon_conn_id": "no_such_carbon_conn"}, "no_such_carbon_conn"),
        ({"deadline": "2023-06-06T01:00"}, "has no time zone"),
        ({"on_outage": "maybe"}, "on_outage='maybe' is not valid"),
        ({"max_intensity": None}, "give exactly one threshold"),
        ({"max_intensity": "abc"}, r"max_intensity='abc' is not a number; give e.g. max_intensity=250"),
        ({"max_intensity": "nan"}, r"max_intensity='nan' must be a finite number"),  # waited to the deadline
        ({"max_intensity": 1e12}, r"max_intensity=1000000000000.0 gCO2eq/kWh must be 0 or more and at most"),
        ({"max_intensity": None, "percentile": "most"}, r"percentile='most' is not a number"),
        ({"max_intensity": None, "percentile": 30, "history_days": 1e12}, r"history_days=1000000000000.0 must"),
        ({"max_intensity": None, "percentile": 30, "history_days": "0"}, r"history_days='0' must be more than 0"),
    ],
)  # fmt: skip
def test_bad_input_fails_the_task_with_a_clear_message(
    replay_at: ReplayAt, settings: dict[str, Any], message: str
) -> None:
    replay_at("2023-06-05T04:00Z")
    with pytest.raises(AirflowFailException, match=message):
        sensor(**settings).execute(NO_CONTEXT)
