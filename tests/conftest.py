"""Shared pytest fixtures: where the recorded real data used by the tests lives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from carbon_sensors.replay import ENV_NAMES

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def traces_dir() -> Path:
    """Slices of the real recorded traces (see tests/fixtures/traces/SOURCE.md)."""
    return FIXTURES / "traces"


@pytest.fixture(autouse=True)
def replay_settings_stay_in_their_test() -> Iterator[None]:
    """`Replay.from_env()` writes the epoch it fixes into the environment (for child processes); a test that
    set only a replay start must not hand that epoch to the next test. Runs after monkeypatch's own undo."""
    before = {name: os.environ.get(name) for name in ENV_NAMES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
