"""Is a hold worth it? A minimum expected saving, in percent against running now, below which the job runs now.

Why a floor at all: a hold costs something (the result comes later; a pause also costs a checkpoint and a
resume), and a forecast that is flat or tied promises savings no better than its own rounding. Why only 1%
by default: the savings backtest (real NESO forecast issues, and 14 zones history-only, 400 jobs each,
`benchmarks/backtest.py`) loses the more of the oracle's savings the higher the floor, even with real
forecast errors: shipped policy 0.80 / 0.79 / 0.75 on NESO issues at 0 / 1 / 5%, 0.84 / 0.83 / 0.69 on the
14 zones, where clean low-variance grids (FR, SE) rarely promise 5% and gave up all their savings. The floor
decides whether a job is held at all (`ForecastWindowStrategy`, the window hold, the Prefect wait), not each
hourly re-plan of a held training job; raise it (e.g. 5) where waiting itself is costly. Set 0 to hold for
any saving.

A hold woken at its window re-plans, and holds again only for a later window that saves `min_savings`; at most
`max_replans` times, so a forecast that keeps moving the low later cannot walk a job to its deadline in steps.
"""

from __future__ import annotations

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.planner import Plan

DEFAULT_MIN_SAVINGS = 1.0
DEFAULT_MAX_REPLANS = 3  # a hold woken at its window holds again at most this many times (both faces)


def check_min_savings(min_savings: float) -> float:
    """`min_savings` as a float in [0, 100); anything else is an error naming it."""
    if (
        isinstance(min_savings, bool)
        or not isinstance(min_savings, int | float)
        or not 0 <= min_savings < 100
    ):
        raise InvalidInputError(
            f"min_savings={min_savings!r} is not valid; give a percentage from 0 (hold for any saving) "
            f"to below 100 (default {DEFAULT_MIN_SAVINGS:g})"
        )
    return float(min_savings)


def check_max_replans(max_replans: int) -> int:
    """`max_replans` as a whole number >= 0; anything else is an error naming it."""
    if isinstance(max_replans, bool) or not isinstance(max_replans, int) or max_replans < 0:
        raise InvalidInputError(
            f"max_replans={max_replans!r} is not valid; give a whole number >= 0 of times a hold woken at its "
            f"window may hold again (0: never; default {DEFAULT_MAX_REPLANS})"
        )
    return max_replans


def not_worth_holding(plan: Plan, min_savings: float) -> str | None:
    """Why holding for `plan` is not worth it (run now instead), or None when it is.

    A plan whose run-now intensity is unknown has no saving to compare: the hold stands.
    """
    threshold = check_min_savings(min_savings)
    if plan.savings_pct is None or plan.savings_pct >= threshold:
        return None
    return (
        f"the best window ({plan.start:%Y-%m-%dT%H:%MZ}) saves only {plan.savings_pct:.1f}% against running now, "
        f"less than min_savings={threshold:g}%: running now"
    )
