"""Replay: recorded data read as now, labelled as replay, portable through the environment."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pandas as pd
import pytest

from carbon_sensors.errors import InvalidInputError, NoDataError
from carbon_sensors.providers import IntensitySource, TraceProvider
from carbon_sensors.providers.registry import make_source
from carbon_sensors.replay import (
    ENV_SPEED,
    ENV_START,
    ENV_WALL_START,
    MAX_SPEED,
    MIN_SPEED,
    GridClock,
    Replay,
    adopt_replay,
    replay_handoff,
)

WALL = pd.Timestamp("2026-11-28T12:00Z")
TRACE = pd.Timestamp("2023-06-01T00:00Z")


def test_clock_maps_both_ways_at_speed() -> None:
    replay = Replay(TRACE, WALL, speed=1440)  # a day a minute
    assert replay.trace_time(WALL + timedelta(seconds=30)) == TRACE + timedelta(hours=12)
    assert replay.wall_time(TRACE + timedelta(hours=6)) == WALL + timedelta(seconds=15)
    assert replay.wall_duration(timedelta(hours=24)) == timedelta(minutes=1)


def test_env_round_trip_and_bad_values() -> None:
    replay = Replay(TRACE, WALL, speed=60.0)
    assert Replay.from_env(replay.to_env()) == replay
    assert Replay.from_env({}) is None
    with pytest.raises(InvalidInputError, match="CARBON_AWARE_REPLAY_SPEED='fast' is not a number"):
        Replay.from_env({**replay.to_env(), "CARBON_AWARE_REPLAY_SPEED": "fast"})
    with pytest.raises(InvalidInputError, match=r"speed=0 must be a finite number from 0\.001 to 1e"):
        Replay(TRACE, WALL, speed=0)


@pytest.mark.parametrize("speed", ["inf", "-inf", "nan", "1e300", "1e-300", "-5", "0"])
def test_speed_out_of_range_is_refused_naming_the_variable(speed: str) -> None:
    """inf raised OverflowError and 1e300 OutOfBoundsDatetime instead of naming the setting."""
    env = {**Replay(TRACE, WALL).to_env(), ENV_SPEED: speed}
    with pytest.raises(
        InvalidInputError, match=rf"{ENV_SPEED}=.* must be a finite number from 0.001 to 1e\+06"
    ):
        Replay.from_env(env)
    with pytest.raises(InvalidInputError, match="replay speed="):
        Replay(TRACE, WALL, speed=float(speed))
    for edge in (MIN_SPEED, MAX_SPEED):  # the range's ends are allowed
        assert Replay.from_env({**env, ENV_SPEED: repr(edge)}) == Replay(TRACE, WALL, edge)


def test_trace_provider_replays_real_values_labelled_as_replay() -> None:
    provider = TraceProvider(replay=Replay.starting_now(TRACE + timedelta(minutes=30), speed=1.0))
    assert isinstance(provider, IntensitySource)
    reading = provider.latest("DE")
    assert reading.replay is True
    assert "replay" in reading.source
    assert reading.period_start == TRACE
    assert reading.value == 272.14  # the recorded Electricity Maps value for DE at 2023-06-01 00:00 UTC
    forecast = provider.forecast("DE", horizon=timedelta(hours=6))
    assert len(forecast) == 6 and "no foresight" in forecast.source  # our model on the trace's past
    perfect = TraceProvider(replay=provider.replay, forecast="perfect").forecast(
        "DE", horizon=timedelta(hours=6)
    )
    assert len(perfect) == 6 and "PERFECT FORECAST" in perfect.source


def test_trace_provider_without_replay_has_no_now() -> None:
    provider = TraceProvider()
    with pytest.raises(NoDataError, match="a recorded trace has no 'now'"):
        provider.latest("DE")
    history = provider.history("GB", pd.Timestamp("2023-06-01T00:00Z"), pd.Timestamp("2023-06-01T03:00Z"))
    assert len(history) == 3 and history.replay is False


def test_replay_history_stops_at_now() -> None:
    provider = TraceProvider(replay=Replay.starting_now(TRACE + timedelta(hours=2, minutes=10)))
    history = provider.history("DE", TRACE, TRACE + timedelta(days=1))
    assert len(history) == 3 and history.replay is True


def test_grid_clock_is_identity_live_and_converts_under_replay() -> None:
    live = GridClock()
    assert not live.replaying
    assert live.to_wall(TRACE) == TRACE and live.wall_duration(timedelta(hours=1)) == timedelta(hours=1)
    clock = GridClock(Replay(TRACE, WALL, speed=3600))  # an hour a second
    assert clock.replaying
    assert clock.to_wall(TRACE + timedelta(hours=2)) == WALL + timedelta(seconds=2)
    assert clock.to_grid(WALL + timedelta(seconds=3)) == TRACE + timedelta(hours=3)
    assert clock.wall_duration(timedelta(hours=1)) == timedelta(seconds=1)
    assert clock.grid_duration(timedelta(seconds=1)) == timedelta(hours=1)


def test_without_a_wall_start_the_first_reading_fixes_the_epoch_for_the_process_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduced: each `make_source("trace")` restarted the replay clock (two calls 2 s apart gave 20:00:01
    and 19:00:00), so every rescheduled run saw the same dirty hour again."""
    monkeypatch.setenv(ENV_START, "2023-07-04T05:00Z")
    monkeypatch.setenv(ENV_SPEED, "3600")
    monkeypatch.delenv(ENV_WALL_START, raising=False)
    first = TraceProvider(replay=Replay.from_env()).replay
    time.sleep(0.3)  # 18 trace minutes at this speed
    source = make_source("trace")
    assert isinstance(source, TraceProvider)
    second = source.replay
    assert first is not None and first == second == Replay.from_env()
    assert GridClock.from_env().now() >= second.trace_time(second.wall_start + timedelta(seconds=0.3))
    child = subprocess.run(
        [sys.executable, "-c", "from carbon_sensors.replay import Replay; print(Replay.from_env().wall_start)"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert pd.Timestamp(child.stdout.strip()) == first.wall_start  # a child process replays on the same clock


def test_replay_handoff_carries_the_chain_epoch_and_adopting_it_rejoins_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_START, raising=False)
    assert replay_handoff() == {}  # replay off: nothing to hand on
    replay = Replay(TRACE, WALL, speed=60.0)
    monkeypatch.setenv(ENV_START, TRACE.isoformat())
    monkeypatch.setenv(ENV_WALL_START, (WALL + timedelta(hours=1)).isoformat())  # this process's own epoch
    adopt_replay(replay.to_env())  # e.g. from a deferral's state: the chain's epoch wins
    assert Replay.from_env() == replay and replay_handoff() == replay.to_env()
    with pytest.raises(InvalidInputError, match="not a replay setting"):
        adopt_replay({"PATH": "/tmp"})
