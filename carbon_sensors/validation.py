"""What counts as a carbon-intensity number, checked in one place for every parser and every signal.

Why one place: a NaN, an infinity or a negative value that slips through one parser poisons everything
downstream (one inf hour made every later planner window unknown). A missing value is a gap (NaN in a
signal, reported), never a number; anything else that is not a finite number in [0, MAX_INTENSITY] is a
malformed input, refused with a message that quotes it.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

import pandas as pd

from carbon_sensors.redact import redact

MAX_INTENSITY = 100_000.0
"""gCO2eq/kWh. Real grids stay below about 1,500 (coal); a larger number is a broken payload, and it keeps
the planner's integrals (value x nanoseconds) far from float overflow."""

EARLIEST = pd.Timestamp("1990-01-01T00:00Z")
LATEST = pd.Timestamp("2200-01-01T00:00Z")
"""Data timestamps outside [EARLIEST, LATEST) are malformed: no grid data is older, and far-off times
overflow the nanosecond arithmetic of planners and replay clocks."""

_SHORT = reprlib.Repr()
_SHORT.maxlevel = 3
_SHORT.maxstring = 60
_SHORT.maxlong = 40
_SHORT.maxother = 60


def intensity_problem(value: float) -> str | None:
    """Why `value` is not a carbon intensity in gCO2eq/kWh, or None when it is one."""
    if math.isnan(value):
        return "a number (NaN is not one; a missing value must be null or empty)"
    if math.isinf(value):
        return "a finite number"
    if value < 0:
        return "a number >= 0 gCO2eq/kWh"
    if value > MAX_INTENSITY:
        return f"a plausible intensity, at most {MAX_INTENSITY:g} gCO2eq/kWh"
    return None


def short_repr(value: Any) -> str:
    """A repr short enough for an error message, safe on huge or deeply nested input."""
    try:
        # A string is redacted before reprlib cuts it; inside containers, the cut pieces are still caught
        # afterwards (a credential is masked by its cut-off start or end, too).
        return redact(_SHORT.repr(redact(value) if isinstance(value, str) else value))
    except (ValueError, RecursionError, MemoryError):  # e.g. an int beyond Python's str digit limit
        return f"<{type(value).__name__} too large to show>"
