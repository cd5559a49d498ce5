"""Property tests at the input boundary: whatever a provider, a trace file, a ledger line or a user types,
only `CarbonAwareError` subclasses escape, and whatever is accepted is a real intensity.

Provider parsers are driven sans-IO (the exchanges are generators of requests and responses, the same
code the HTTP transports run) with the recorded responses, broken at one random place, and with raw bytes.
Each test is bounded to a few seconds by its example count.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ledger_reading import good_lines

from carbon_sensors.emissions import read_jsonl
from carbon_sensors.errors import CarbonAwareError
from carbon_sensors.providers.cache import TTLCache
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.http import Exchange, Request, Response
from carbon_sensors.providers.live import LiveProvider
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.providers.watttime import WattTimeProvider
from carbon_sensors.signal import IntensityReading, IntensitySignal
from carbon_sensors.timeutil import parse_duration, parse_utc
from carbon_sensors.traces import read_trace
from carbon_sensors.validation import MAX_INTENSITY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "api"
BOUNDED = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- inputs ------------------------------------------------------------------------------------------
ODD_SCALARS: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 0, -1, -0.5, 10**400, 1e308, float("nan"), float("inf"), -float("inf"), "", "300", "NaN",
     "2023-06-01T00:00Z", "2023-06-01T00:00", "9999-12-31T23:59Z", "0001-01-01T00:00Z", "x" * 5000, [], {}]
)  # fmt: skip
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | ODD_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document (dict keys and list positions), the root included."""
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from paths(value, (*prefix, i))


def broken(doc: Any, where: tuple[Any, ...], new: Any, delete: bool) -> Any:
    """`doc` with the value at `where` replaced by `new` (or deleted from its parent)."""
    if not where:
        return new
    doc = json.loads(json.dumps(doc))
    parent = doc
    for step in where[:-1]:
        parent = parent[step]
    if delete:
        del parent[where[-1]]
    else:
        parent[where[-1]] = new
    return doc


@st.composite
def bodies(draw: st.DrawFn, recordings: list[str]) -> bytes:
    """A recorded response broken at one place, random JSON, or raw bytes (deep nesting included)."""
    kind = draw(st.sampled_from(["broken", "broken", "broken", "json", "bytes", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        return b"[" * draw(st.integers(500, 200_000))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    doc = recorded(draw(st.sampled_from(recordings)))
    where = draw(st.sampled_from(list(paths(doc))))
    return json.dumps(broken(doc, where, draw(JSON_VALUES), bool(where) and draw(st.booleans()))).encode()


# --- driving provider exchanges sans-IO ----------------------------------------------------------------
def answer(exchange: Exchange[Any], body: bytes, status: int, login: bytes) -> Any:
    """Run an exchange, answering every request with `body` (WattTime's login with `login`)."""
    request = next(exchange)
    try:
        while True:
            request = exchange.send(respond(request, body, status, login))
    except StopIteration as stop:
        return stop.value


def respond(request: Request, body: bytes, status: int, login: bytes) -> Response:
    if request.url.endswith("/login"):
        return Response(200, login, {}, request, pd.Timestamp("2022-07-15T00:00Z"))
    return Response(status, body, {"Retry-After": "1"}, request, pd.Timestamp("2022-07-15T00:00Z"))


def check_accepted(result: Any) -> None:
    """Whatever a parser accepts is a real intensity: finite, >= 0, plausible; gaps are NaN."""
    if isinstance(result, IntensityReading):
        assert math.isfinite(result.value) and 0 <= result.value <= MAX_INTENSITY, result
    if isinstance(result, IntensitySignal):
        known = result.values.dropna()
        assert ((known >= 0) & (known <= MAX_INTENSITY)).all(), result.values


def only_typed_errors(run: Callable[[], Any]) -> None:
    with contextlib.suppress(CarbonAwareError):
        check_accepted(run())


NOW = pd.Timestamp("2022-07-15T00:12Z")
START, END = NOW - pd.Timedelta(hours=2), NOW


def options() -> dict[str, Any]:
    return {
        "base_url": "http://127.0.0.1:9",
        "cache": TTLCache(),
        "clock": lambda: NOW,
        "max_age": timedelta(days=99999),
    }


def exchanges(provider: LiveProvider, zone: str) -> list[Callable[[], Exchange[Any]]]:
    return [
        lambda: provider.latest_exchange(zone, NOW),
        lambda: provider.history_exchange(zone, START, END),
        lambda: provider.history_exchange(zone, START - pd.Timedelta(days=30), END),
        lambda: provider.forecast_exchange(zone, None, timedelta(hours=24), NOW),
    ]


STATUS = st.sampled_from([200, 200, 200, 200, 400, 401, 403, 404, 429, 500])
EM_RECORDINGS = [
    f"electricitymaps/carbon-intensity_{n}.json" for n in ("latest", "history", "past-range", "forecast")
]
WT_RECORDINGS = [f"watttime/{n}.json" for n in ("forecast", "historical", "signal-index", "region-from-loc")]
UK_RECORDINGS = [
    f"uk-carbonintensity/{n}.json"
    for n in ("intensity", "intensity_pt24h", "intensity_fw48h", "regional_regionid_13_derived")
]


@BOUNDED
@given(body=bodies(EM_RECORDINGS), status=STATUS, which=st.integers(0, 3))
def test_electricity_maps_parsers(body: bytes, status: int, which: int) -> None:
    em = ElectricityMapsProvider(token="tok", **options())
    only_typed_errors(lambda: answer(exchanges(em, "DE")[which](), body, status, b""))


@BOUNDED
@given(
    body=bodies(WT_RECORDINGS), login=bodies(["watttime/login.json"]), status=STATUS, which=st.integers(0, 5)
)
def test_watttime_parsers(body: bytes, login: bytes, status: int, which: int) -> None:
    wt = WattTimeProvider(username="u", password="p", **options())
    steps: list[Callable[[], Exchange[Any]]] = [
        *exchanges(wt, "CAISO_NORTH"),
        lambda: wt.index_exchange("CAISO_NORTH", NOW),
        lambda: wt.region_exchange(37.0, -122.0),
    ]
    only_typed_errors(lambda: answer(steps[which](), body, status, login))


@BOUNDED
@given(
    body=bodies(UK_RECORDINGS),
    status=STATUS,
    zone=st.sampled_from(["GB", "GB-13", "GB-RG10"]),
    which=st.integers(0, 3),
)
def test_uk_parsers(body: bytes, status: int, zone: str, which: int) -> None:
    uk = UKCarbonIntensityProvider(**options())
    only_typed_errors(lambda: answer(exchanges(uk, zone)[which](), body, status, b""))


# --- trace files ---------------------------------------------------------------------------------------
TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        ["2023-06-01T00:00Z", "2023-06-01T01:00+02:00", "2023-03-26T03:00+02:00", "", "NaT", "soon"]
    ),
    st.text(max_size=12),
)
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10, 10**6).map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "1e400", "null", "None", "12,5", "abc"]),
    st.text(max_size=6),
)
HEADERS = st.sampled_from(["timestamp,value", "from,forecast,actual", "datetime,intensity", "when,what", ""])


@st.composite
def trace_files(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["csv", "csv", "json", "raw"]))
    rows = draw(st.lists(st.tuples(TIMES, VALUES), max_size=8))
    if kind == "raw":
        return "raw.csv", draw(st.binary(max_size=200))
    if kind == "json":
        doc = draw(
            st.one_of(
                st.just({"zone": "DE", "data": [{"timestamp": t, "value": v} for t, v in rows]}),
                st.just([{"timestamp": t, "value": v} for t, v in rows]),
                JSON_VALUES,
            )
        )
        return "trace.json", json.dumps(doc).encode()
    header = draw(HEADERS)
    columns = max(1, header.count(",") + 1)
    lines = [",".join([t, *([v] * (columns - 1))]) for t, v in rows]
    return "trace.csv", ("\n".join([header, *lines]) + "\n").encode()


@BOUNDED
@given(
    trace=trace_files(), assume_utc=st.booleans(), gaps=st.sampled_from(["report", "error", "interpolate"])
)
def test_trace_reader(trace: tuple[str, bytes], assume_utc: bool, gaps: Any) -> None:
    name, content = trace
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        only_typed_errors(lambda: read_trace(path, assume_utc=assume_utc, gaps=gaps))


# --- emissions timelines -------------------------------------------------------------------------------
GOOD_LINES = good_lines()


@st.composite
def timelines(draw: st.DrawFn) -> str:
    lines = list(GOOD_LINES)
    line = draw(st.integers(0, len(lines) - 1))
    if draw(st.booleans()):
        doc = json.loads(lines[line])
        where = draw(st.sampled_from(list(paths(doc))))
        lines[line] = json.dumps(broken(doc, where, draw(JSON_VALUES), bool(where) and draw(st.booleans())))
    else:
        lines[line] = draw(st.one_of(st.text(max_size=30), st.just("[" * 50_000)))
    return "\n".join(lines) + "\n"


@BOUNDED
@given(text=timelines())
def test_read_jsonl(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "timeline.jsonl"
        path.write_text(text, encoding="utf-8")
        only_typed_errors(lambda: read_jsonl(path).report())


# --- what users type -----------------------------------------------------------------------------------
DURATIONS = st.one_of(
    st.text(max_size=12),
    st.from_regex(r"\A\s*-?\d{1,14}(\.\d{1,3})?\s*(s|sec|m|min|h|hr|d)\s*\Z"),
    st.from_regex(r"\AP(\d{1,12}D)?(T(\d{1,12}H)?(\d{1,12}M)?(\d{1,12}S)?)?\Z"),
    st.timedeltas(),
    st.integers(),
    st.floats(allow_nan=True),
    ODD_SCALARS,
)


@BOUNDED
@given(value=DURATIONS)
def test_duration_parser(value: Any) -> None:
    try:
        parsed = parse_duration(value)
    except CarbonAwareError:
        return
    assert timedelta(0) < parsed <= timedelta(days=36500)
    assert pd.Timedelta(parsed) == parsed  # fits pandas' nanosecond arithmetic


TIMES_TYPED = st.one_of(
    TIMES,
    st.datetimes(timezones=st.timezones()),
    st.datetimes(),
    st.from_regex(r"\A\d{1,6}-\d{1,2}-\d{1,2}T\d{1,2}:\d{2}(Z|[+-]\d{2}:\d{2})?\Z"),
    st.integers(),
    ODD_SCALARS,
)


@BOUNDED
@given(value=TIMES_TYPED)
def test_time_parser(value: Any) -> None:
    try:
        parsed = parse_utc(value, "deadline")
    except CarbonAwareError:
        return
    assert str(parsed.tz) == "UTC"
    assert parsed + pd.Timedelta(days=30) > parsed  # far from the edge of the nanosecond range
