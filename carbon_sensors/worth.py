"""Is a hold worth it? A minimum expected saving, in percent against running now, below which the job runs now.

Why: holding costs something (the result comes later; a pause also costs a checkpoint and a resume) and real
forecasts err by 7-16% (NESO national MAPE), so a few percent of expected saving is within the forecast's noise:
the window hold once waited 22 trace hours for a 4.1% saving. Why 5% by default: shifting one-piece jobs to the
best window saved 2.5-6.6% in Let's Wait Awhile (DE, GB, FR, CA); 5% keeps the holds that pay in the grids where
shifting pays and skips the ones whose saving a typical forecast error would erase. Set 0 to hold for any saving.
"""

from __future__ import annotations

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.planner import Plan

DEFAULT_MIN_SAVINGS = 5.0


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
