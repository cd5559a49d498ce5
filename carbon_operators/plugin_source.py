"""How the UI plugin asks its carbon-intensity source: few upstream calls, and never a pile-up.

Any logged-in user may ask the plugin with any `hours`, `start` or deadline. Asked as given, every distinct
value would cost one upstream (often paid) call, and a slow upstream would hold every request. So:

- Questions are normalised. The source is asked for the smallest of `HORIZON_TIERS` that covers the
  question, from the hour it starts in, and the answer is cut to the periods asked for (`hours` rounded up
  to the signal's own resolution). The live providers' shared TTL cache keys on the normalised question,
  so `hours=5` and `hours=5.5` share one call.
- Concurrent askers of one question await one call (the shared cache's in-flight sharing).
- A failed call is remembered for `NEGATIVE_TTL` seconds: the same question fails at once, upstream untouched.
- At most `MAX_UPSTREAM` calls run at once per api-server process; a question that cannot start within
  `QUEUE_SECONDS` fails with `ProviderUnavailableError` instead of holding its request.

Everything here is async: a request waiting for the upstream holds no api-server thread.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable, Callable, Hashable
from datetime import timedelta
from typing import TypeVar

import pandas as pd

from carbon_sensors.errors import InvalidInputError, ProviderError, ProviderUnavailableError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.signal import IntensityReading, IntensitySignal

T = TypeVar("T")

MAX_HOURS = 168.0
# Electricity Maps' own forecast horizons, then a week plus the hour a start is floored by.
HORIZON_TIERS = (24.0, 48.0, 72.0, MAX_HOURS + 1.0)
NEGATIVE_TTL = 30.0
MAX_UPSTREAM = 4
QUEUE_SECONDS = 10.0
HOUR = pd.Timedelta(hours=1)

_limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


async def latest(source: IntensitySource, zone: str) -> IntensityReading:
    return await _ask(source, ("latest", zone), lambda: source.alatest(zone))


async def forecast(
    source: IntensitySource, zone: str, start: pd.Timestamp | None, hours: float
) -> IntensitySignal:
    """The periods of the next `hours` (from `start`, else now), asked as the covering tier."""
    if not 0 < hours <= MAX_HOURS:
        raise InvalidInputError(f"hours={hours} must be more than 0 and at most {MAX_HOURS:g}")
    begin = None if start is None else start.floor(HOUR)
    needed = pd.Timedelta(hours=hours) + (pd.Timedelta(0) if start is None else HOUR)
    tier = _tier(needed, "hours")
    signal = await _ask(source, ("forecast", zone, begin, tier), lambda: source.aforecast(zone, begin, tier))
    anchor = signal.start if start is None else start.floor(signal.resolution)
    length = pd.Timedelta(hours=hours)
    return signal.between(anchor, anchor + signal.resolution * math.ceil(length / signal.resolution))


async def recent(source: IntensitySource, zone: str, end: pd.Timestamp, hours: float) -> IntensitySignal:
    """The recorded periods of the `hours` before `end` (floored to the hour), asked as the covering tier."""
    if not 0 < hours <= MAX_HOURS:
        raise InvalidInputError(f"hours={hours} must be more than 0 and at most {MAX_HOURS:g}")
    stop, tier = end.floor(HOUR), _tier(pd.Timedelta(hours=hours), "hours")
    signal = await _ask(
        source, ("history", zone, stop, tier), lambda: source.ahistory(zone, stop - tier, stop)
    )
    return signal.between(stop - pd.Timedelta(hours=hours), stop)


async def model_history(
    source: IntensitySource, zone: str, end: pd.Timestamp, span: timedelta
) -> IntensitySignal:
    """The `span` before `end` (floored to the hour) that our model is fitted on: one question per zone and hour.

    `span` is the product's fixed model history, not a caller's value, so it needs no tier.
    """
    stop = end.floor(HOUR)
    start = stop - pd.Timedelta(span)
    return await _ask(source, ("history", zone, stop, span), lambda: source.ahistory(zone, start, stop))


def _tier(needed: pd.Timedelta, what: str) -> timedelta:
    for hours in HORIZON_TIERS:
        if needed <= pd.Timedelta(hours=hours):
            return timedelta(hours=hours)
    raise InvalidInputError(
        f"{what} reaches {needed} ahead; the plugin looks at most {MAX_HOURS:g} hours ahead"
    )


async def _ask(
    source: IntensitySource, question: tuple[Hashable, ...], call: Callable[[], Awaitable[T]]
) -> T:
    key = ("carbon-plugin", source.name, getattr(source, "base_url", None), *question)
    # ttl 0: nothing is stored under the plugin's key; the cache only shares the call in flight.
    return await shared_cache().aget_or_fetch(key, 0.0, lambda: _bounded(key, call))


async def _bounded(key: tuple[Hashable, ...], call: Callable[[], Awaitable[T]]) -> T:
    cache, failed = shared_cache(), ("failed", *key)
    found, error = cache.peek(failed)
    if found:
        raise error.with_traceback(None)
    loop = asyncio.get_running_loop()
    limit = _limits.get(loop)
    if limit is None:  # one per event loop: a semaphore may only be awaited in the loop it first ran in
        limit = _limits[loop] = asyncio.Semaphore(MAX_UPSTREAM)
    try:
        await asyncio.wait_for(limit.acquire(), QUEUE_SECONDS)
    except TimeoutError:
        raise ProviderUnavailableError(
            f"{MAX_UPSTREAM} calls to the carbon-intensity source are in flight and none finished within "
            f"{QUEUE_SECONDS:g} s; try again shortly"
        ) from None
    try:
        return await call()
    except ProviderError as exc:
        cache.put(failed, exc, NEGATIVE_TTL)
        raise
    finally:
        limit.release()
