"""UTC at the boundary: parse and check datetimes once, so everything inside is tz-aware UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd

from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError
from carbon_sensors.validation import EARLIEST, LATEST, short_repr

MAX_DURATION = timedelta(days=36500)
"""100 years: longer durations are typos (and overflow the nanosecond timedeltas pandas computes with)."""
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
# Our own ISO 8601 reader: pd.Timedelta reads 'P1M' as one minute and 'P1.5D' as five days and a second.
_NUM = r"([0-9]+(?:[.,][0-9]+)?)"  # ASCII digits
_ISO = re.compile(rf"^P(?!$)(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?!$)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?$")
_ISO_UNIT_SECONDS = (604800, 86400, 3600, 60, 1)
_ISO_YEARS_OR_MONTHS = re.compile(r"^-?P[^T]*[0-9][YM]")


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
    expected = "expected e.g. '2023-06-01T00:00Z'"
    if not isinstance(text, str | datetime):
        raise InvalidInputError(f"{name}={short_repr(text)} is not an ISO 8601 datetime; {expected}")
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInputError(f"{name}={short_repr(text)} is not an ISO 8601 datetime; {expected}") from exc
    if pd.isna(ts):
        raise InvalidInputError(f"{name}={short_repr(text)} is not an ISO 8601 datetime; {expected}")
    moment = require_utc(ts, name)
    if not EARLIEST <= moment < LATEST:
        raise InvalidInputError(
            f"{name}={short_repr(text)} is outside {EARLIEST:%Y}..{LATEST:%Y}; {expected}"
        )
    return moment


def parse_duration(text: str | timedelta, name: str = "duration", *, zero_ok: bool = False) -> timedelta:
    """Parse '90s', '15min', '3h', '1.5d', ISO 8601 ('PT15M', 'P1DT2H', 'P2W'), or pass a timedelta through.

    ISO years and months ('P1M') are refused: they have no fixed length, and 'P1M' is often meant as 'PT1M'.
    It must be positive (or zero, with `zero_ok`: a margin such as `resume_overhead`) and at most MAX_DURATION;
    a bare number is refused, since its unit would be a guess ('0' too: write '0s').
    """
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float) and not isinstance(text, bool):
        raise InvalidInputError(
            f"{name}={short_repr(text)} is a bare number; write it with a unit, "
            f"e.g. '{short_repr(text)}s' or '15min'"
        )
    elif not isinstance(text, str):
        raise InvalidInputError(f"{name}={short_repr(text)} is not a duration; expected e.g. '15min'")
    else:
        seconds = _duration_seconds(text, name)
    if seconds < 0 or (seconds == 0 and not zero_ok):
        least = "zero or more" if zero_ok else "longer than zero"
        raise InvalidInputError(f"{name}={short_repr(text)} must be {least}")
    if seconds > MAX_DURATION.total_seconds():
        raise InvalidInputError(
            f"{name}={short_repr(text)} is longer than {MAX_DURATION.days} days; "
            "expected e.g. '90s', '15min', '3h', '1d'"
        )
    return text if isinstance(text, timedelta) else timedelta(seconds=seconds)


def _duration_seconds(text: str, name: str) -> float:
    """Seconds in '15min' or 'PT15M' (any sign or size: the caller checks the range)."""
    match = _DURATION.match(text)
    if match:
        return float(match[1]) * _UNIT_SECONDS[match[2].lower()]
    iso = text.strip().upper()
    if iso.startswith(("P", "-P")):
        return _iso_seconds(iso, text, name)
    raise InvalidInputError(
        f"{name}={short_repr(text)} is not a duration; expected a number and a unit, "
        "e.g. '90s', '15min', '3h', '1d', or ISO 8601 such as 'PT15M'"
    )


def _iso_seconds(iso: str, text: str, name: str) -> float:
    """Seconds in an upper-cased ISO 8601 duration; years and months are refused, having no fixed length."""
    if _ISO_YEARS_OR_MONTHS.match(iso):
        raise InvalidInputError(
            f"{name}={short_repr(text)} counts years or months, which have no fixed length; "
            "write days: 'P30D' (and minutes after the T: 'PT1M')"
        )
    negative = "-" in iso  # '-PT5M', 'PT-5M': refused by the caller as negative, whatever the rest
    match = _ISO.match(iso.replace("-", ""))
    if not match:
        raise InvalidInputError(
            f"{name}={short_repr(text)} is not an ISO 8601 duration; expected e.g. 'PT15M', 'PT1H30M', "
            "'P1DT2H' or 'P2W'"
        )
    seconds = sum(
        float(part.replace(",", ".")) * unit
        for part, unit in zip(match.groups(), _ISO_UNIT_SECONDS, strict=True)
        if part is not None
    )
    return -seconds if negative else seconds


def utc_from_ns(ns: int) -> pd.Timestamp:
    """`ns` nanoseconds since the epoch as a UTC Timestamp in microseconds, the unit the clocks' datetimes
    have: arithmetic on it stays in microseconds, which a scheduler's datetime holds without loss."""
    return pd.Timestamp(ns // 1000, unit="us", tz="UTC")


def utcnow() -> pd.Timestamp:
    """The current time as a UTC Timestamp (one place to read the clock)."""
    return pd.Timestamp(datetime.now(UTC))
