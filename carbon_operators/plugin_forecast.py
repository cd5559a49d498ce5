"""The forecast the UI plugin shows and plans on: the operators' own, fetched the plugin's guarded way.

The window operator, the forecast-window strategy and the Prefect wait plan on `assemble_forecast` (the
provider's forecast and our model blended per hour ahead). The plugin shows and plans on the same, so the
page says what the operators would do. `assemble_forecast` asks its source synchronously, but a request
waiting for the upstream must hold no api-server thread, and every upstream call must go through
`plugin_source` (normalised, shared, negatively cached, bounded). So the provider's forecast and then the
model's history are fetched first, asynchronously through `plugin_source`, and `assemble_forecast` runs in a
worker thread (the fit is CPU work) on a source that answers from what was fetched. A failed fetch raises its
own error there, so the blend's fallbacks and its errors are exactly the operators'.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import cast

import pandas as pd

from carbon_operators import plugin_source
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.forecast.combine import (
    MODEL_HISTORY_DAYS,
    PERMANENT_ERRORS,
    SOURCE_ERRORS,
    assemble_forecast,
)
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.signal import IntensitySignal

# The history our model is fitted on: the operators' default (ForecastWindowStrategy's history_days,
# assemble_forecast's history).
MODEL_HISTORY = timedelta(days=MODEL_HISTORY_DAYS)
BLEND_TTL = 60.0  # seconds a blend is reused: well inside the providers' own 5 min response cache

Fetched = IntensitySignal | Exception


@dataclass(frozen=True)
class _Answers:
    """The fetched forecast and history, answered to `assemble_forecast` as if it asked the source."""

    name: str
    provides_forecast: bool
    forecast_is_exact: bool
    provider: Fetched | None
    past: Fetched

    def forecast(self, zone: str, start: datetime | None, horizon: timedelta) -> IntensitySignal:
        return _unwrap(self.provider)

    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        return _unwrap(self.past)


def _unwrap(fetched: Fetched | None) -> IntensitySignal:
    if isinstance(fetched, Exception):
        raise fetched.with_traceback(None)
    assert fetched is not None, "assemble_forecast asks the provider only when the source provides one"
    return fetched


async def _fetch(ask: Awaitable[IntensitySignal]) -> Fetched:
    """The answer, or the error that another source of the blend may stand in for."""
    try:
        return await ask
    except PERMANENT_ERRORS:
        raise  # no fallback can help: the caller's error at once
    except SOURCE_ERRORS as exc:
        return exc


async def product_forecast(
    source: IntensitySource, zone: str, start: pd.Timestamp, hours: float
) -> IntensitySignal:
    """The operators' forecast from the hour containing `start`, `hours` ahead (whole hours, rounded up).

    The blend is made for the covering horizon tier (as `plugin_source` asks the provider) and kept for
    `BLEND_TTL` seconds in the shared cache, so the `hours` of many requests share one fit (~0.25 s of CPU).
    """
    if not 0 < hours <= plugin_source.MAX_HOURS:  # also when no provider forecast is asked
        raise InvalidInputError(f"hours={hours} must be more than 0 and at most {plugin_source.MAX_HOURS:g}")
    begin = start.floor("h")
    # the longest span whose provider question (span + the hour `begin` is floored by) is this tier
    span = min(tier - 1 for tier in plugin_source.HORIZON_TIERS if hours + 1 <= tier)
    offers = bool(getattr(source, "provides_forecast", True))
    exact = bool(getattr(source, "forecast_is_exact", False))
    key = (
        "carbon-plugin",
        "blend",
        source.name,
        getattr(source, "base_url", None),
        offers,
        exact,
        zone,
        begin,
        span,
    )
    made = await shared_cache().aget_or_fetch(
        key, BLEND_TTL, lambda: _blend(source, zone, begin, span, offers=offers, exact=exact)
    )
    return made.between(begin, begin + pd.Timedelta(hours=math.ceil(hours)))


async def _blend(
    source: IntensitySource, zone: str, begin: pd.Timestamp, span: float, *, offers: bool, exact: bool
) -> IntensitySignal:
    provider = await _fetch(plugin_source.forecast(source, zone, begin, span)) if offers else None
    past = await _fetch(plugin_source.model_history(source, zone, begin, MODEL_HISTORY))
    # assemble_forecast asks only `forecast`, `history` and the two flags, which `_Answers` has.
    answers = cast(IntensitySource, _Answers(source.name, offers, exact, provider, past))
    made = await asyncio.to_thread(
        assemble_forecast, answers, zone, begin, pd.Timedelta(hours=span), history=MODEL_HISTORY
    )
    replayed = any(isinstance(got, IntensitySignal) and got.replay for got in (provider, past))
    return replace(made, replay=made.replay or replayed)  # the blend is made of replayed data: say so
