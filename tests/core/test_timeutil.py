"""Durations and times at the boundary: what users type is parsed or refused with a typed error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from carbon_sensors.errors import InvalidInputError, NaiveDatetimeError
from carbon_sensors.timeutil import parse_duration, parse_utc


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15min", timedelta(minutes=15)),
        (" 3h ", timedelta(hours=3)),
        ("1.5d", timedelta(hours=36)),
        ("PT15M", timedelta(minutes=15)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("pt1m", timedelta(minutes=1)),
        ("P1.5D", timedelta(hours=36)),  # pd.Timedelta read five days and a second
        ("PT1,5H", timedelta(minutes=90)),
        ("P2W", timedelta(days=14)),
        (timedelta(minutes=5), timedelta(minutes=5)),
    ],
)
def test_durations_people_write(text: str | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("99999999999d", r"duration='99999999999d' is longer than 36500 days"),  # was an OverflowError
        ("1e308s", r"is not a duration"),
        ("0s", r"must be longer than zero"),
        ("-5min", r"is not a duration"),
        ("PT-5M", r"must be longer than zero"),
        ("PT1H-30M", r"must be longer than zero"),  # a sign inside: refused, not read as 30 min
        ("P1\u0663D", r"is not an ISO 8601 duration"),  # an Arabic-Indic digit: not read as 13 days
        ("P99999999999D", r"duration='P99999999999D' is longer than 36500 days"),
        ("P40000D", r"is longer than 36500 days"),
        ("Pxyz", r"duration='Pxyz' is not an ISO 8601 duration; expected e.g. 'PT15M'"),
        ("P1DT", r"is not an ISO 8601 duration"),
        ("15", r"is not a duration; expected a number and a unit"),
        (900, r"duration=900 is a bare number; write it with a unit, e.g. '900s' or '15min'"),
        (None, r"duration=None is not a duration"),
        (timedelta(days=-1), r"must be longer than zero"),
    ],
)
def test_bad_durations_are_typed_errors(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["P1M", "p6m", "P1Y", "P1Y2M3DT4H", "-P1M"])
def test_iso_years_and_months_are_refused_not_read_as_minutes(text: str) -> None:
    """pd.Timedelta read 'P1M' (one month) as one minute; a month has no fixed length, so we ask for days."""
    with pytest.raises(
        InvalidInputError, match=rf"recheck='{text}' counts years or months.*write days: 'P30D'"
    ):
        parse_duration(text, "recheck")


def test_a_margin_may_be_zero_but_not_negative() -> None:
    assert parse_duration("0s", "resume_overhead", zero_ok=True) == timedelta(0)
    with pytest.raises(InvalidInputError, match=r"resume_overhead='PT-1M' must be zero or more"):
        parse_duration("PT-1M", "resume_overhead", zero_ok=True)


def test_times_with_a_zone_are_utc() -> None:
    assert parse_utc("2023-06-01T02:00+02:00") == pd.Timestamp("2023-06-01T00:00Z")
    assert parse_utc(datetime(2023, 6, 1, tzinfo=UTC), "deadline") == pd.Timestamp("2023-06-01T00:00Z")


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("2023-06-01T00:00", NaiveDatetimeError, r"deadline=2023-06-01 00:00:00 has no time zone"),
        ("soon", InvalidInputError, r"deadline='soon' is not an ISO 8601 datetime"),
        ("", InvalidInputError, r"deadline='' is not an ISO 8601 datetime"),
        ("NaT", InvalidInputError, r"deadline='NaT' is not an ISO 8601 datetime"),
        ("99999-01-01T00:00Z", InvalidInputError, r"deadline='99999-01-01T00:00Z' is not an ISO 8601"),
        ("2999-01-01T00:00Z", InvalidInputError, r"deadline='2999-01-01T00:00Z' is outside 1990..2200"),
        (12345, InvalidInputError, r"deadline=12345 is not an ISO 8601 datetime"),
        ([2023], InvalidInputError, r"deadline=\[2023\] is not an ISO 8601 datetime"),
    ],
)
def test_bad_times_are_typed_errors(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_utc(value, "deadline")  # type: ignore[arg-type]
