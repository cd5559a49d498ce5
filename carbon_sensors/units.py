"""Readable numbers with units for people: reports, tables and chart axes share these choices.

Energy shows as Wh below 1 kWh and as kWh from there; emissions as gCO2eq below 1 kg and as kgCO2eq from
there; durations in s, min or h; three significant digits, because a report that prints
0.0001640754904526238 hides its answer. Units and digits are picked after rounding, so 999.6 g shows as
1.00 kgCO2eq, not 1000 gCO2eq.
"""

from __future__ import annotations

import math

WH_PER_KWH = 1000.0
G_PER_KG = 1000.0
DIGITS = 3


def _decimals(value: float, digits: int) -> int:
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def rounded(value: float, digits: int = DIGITS) -> float:
    """`value` rounded to `digits` significant digits (a number, for tables that sort)."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, _decimals(value, digits))


def significant(value: float, digits: int = DIGITS) -> str:
    """`value` to `digits` significant digits as text, never in exponent notation.

    The decimals follow the rounded value, so 9.996 shows as 10.0, not 10.00 (four digits).
    """
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    shown = rounded(value, digits)
    return f"{shown:.{_decimals(shown, digits)}f}"


def energy_scale(kwh: float) -> tuple[float, str]:
    """The factor from kWh and the unit to show energies of this size in: Wh below 1 kWh, else kWh."""
    return (1.0, "kWh") if abs(rounded(kwh)) >= 1.0 else (WH_PER_KWH, "Wh")


def mass_scale(grams: float) -> tuple[float, str]:
    """The factor from grams and the unit to show emissions of this size in: gCO2eq below 1 kg, else kgCO2eq."""
    return (1.0 / G_PER_KG, "kgCO2eq") if abs(rounded(grams)) >= G_PER_KG else (1.0, "gCO2eq")


def duration_scale(seconds: float) -> tuple[float, str]:
    """The factor from seconds and the unit to show durations of this size in: s, min or h."""
    shown = abs(rounded(seconds))
    if shown < 60:
        return 1.0, "s"
    return (1 / 60, "min") if shown < 3600 else (1 / 3600, "h")


def energy_text(kwh: float) -> str:
    factor, unit = energy_scale(kwh)
    return f"{significant(kwh * factor)} {unit}"


def mass_text(grams: float) -> str:
    factor, unit = mass_scale(grams)
    return f"{significant(grams * factor)} {unit}"


def duration_text(seconds: float) -> str:
    factor, unit = duration_scale(seconds)
    return f"{significant(seconds * factor)} {unit}"


def intensity_text(g_per_kwh: float) -> str:
    """An intensity to one decimal: grid intensities run from ~10 to ~900 gCO2eq/kWh."""
    return f"{g_per_kwh:.1f} gCO2eq/kWh"


def quantity_text(value: float, unit: str) -> str:
    """`value` given in `unit` (kWh, gCO2eq, s, gCO2eq/kWh) as text in the unit of its size."""
    shown = {"kWh": energy_text, "gCO2eq": mass_text, "s": duration_text, "gCO2eq/kWh": intensity_text}
    return shown[unit](value) if unit in shown else f"{significant(value)} {unit}".rstrip()
