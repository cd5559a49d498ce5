"""Shared pytest fixtures: where the recorded real data used by the tests lives."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def traces_dir() -> Path:
    """Slices of the real recorded traces (see tests/fixtures/traces/SOURCE.md)."""
    return FIXTURES / "traces"
