"""UTC at the boundary: parse and check datetimes once, so everything inside is tz-aware UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd

from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}


def require_utc(value: datetime | pd.Timestamp, name: str = "datetime") -> pd.Timestamp:
    """Return `value` as a UTC pandas Timestamp; a naive datetime is an error, never assumed UTC."""
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise NaiveDatetimeError(
            f"{name}={value!s} has no time zone; pass an aware datetime such as "
            f"'{ts.isoformat()}+00:00' or datetime(..., tzinfo=timezone.utc)"
        )
    return ts.tz_convert("UTC")


def parse_utc(text: str | datetime, name: str = "datetime") -> pd.Timestamp:
    """An ISO 8601 string that carries its zone ('2023-06-01T00:00Z', '...+02:00'), or an aware datetime, as UTC.

    Both forms reach the boundary: Airflow renders templates to strings, Python callers pass datetimes.
    """
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"{name}={text!r} is not an ISO 8601 datetime; expected e.g. '2023-06-01T00:00Z'"
        ) from exc
    return require_utc(ts, name)


def parse_duration(text: str | timedelta, name: str = "duration") -> timedelta:
    """Parse '90s', '15min', '3h', '1.5d' (or pass a timedelta through); must be positive."""
    if isinstance(text, timedelta):
        delta = text
    else:
        match = _DURATION.match(text)
        if not match:
            raise InvalidInputError(
                f"{name}={text!r} is not a duration; expected a number and a unit, e.g. '90s', '15min', '3h', '1d'"
            )
        delta = timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2].lower()])
    if delta <= timedelta(0):
        raise InvalidInputError(f"{name}={text!s} must be longer than zero")
    return delta


def utcnow() -> pd.Timestamp:
    """The current time as a UTC Timestamp (one place to read the clock)."""
    return pd.Timestamp(datetime.now(UTC))
