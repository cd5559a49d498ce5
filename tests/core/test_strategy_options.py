"""Strategy options (JSON-like, as Airflow and Prefect pass them) go through one typed schema.

Reproduced defect: `{"recheck": 900}` became 900 ns (35 pause/resume cycles in 5 s, no training step).
"""

from __future__ import annotations

import inspect
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carbon_sensors.errors import CarbonAwareError, InvalidInputError
from carbon_sensors.options import duration
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.strategies import STRATEGIES, STRATEGY_OPTIONS, build_strategy, with_outage_policy

SOURCE = TraceProvider()
THRESHOLD = {"pause_above": 250, "resume_below": 200, "max_pause": "6h"}


@pytest.mark.parametrize("bare", [900, 900.0, 0])
def test_a_bare_number_for_a_duration_is_refused_with_how_to_write_it(bare: float) -> None:
    with pytest.raises(InvalidInputError, match=rf"recheck={bare!r} is a bare number.*'{bare}s'.*PT15M"):
        build_strategy("threshold", SOURCE, "DE", {**THRESHOLD, "recheck": bare})


@pytest.mark.parametrize(
    "text", ["15min", "PT15M", "pt15m", "900s", timedelta(minutes=15), pd.Timedelta(minutes=15)]
)
def test_durations_take_units_iso_8601_or_timedelta(text: Any) -> None:
    built = build_strategy("threshold", SOURCE, "DE", {**THRESHOLD, "recheck": text})
    assert vars(built)["recheck"] == pd.Timedelta(minutes=15)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("threshold", {**THRESHOLD, "pause_above": True}, r"pause_above=True is not a number"),
        ("threshold", {**THRESHOLD, "pause_above": "dirty"}, r"pause_above='dirty' is not a number"),
        ("threshold", {**THRESHOLD, "resume_below": float("nan")}, r"resume_below=nan must be a finite"),
        ("threshold", {**THRESHOLD, "on_error": "ignore"}, r"on_error='ignore' is not valid; use one of"),
        ("threshold", {**THRESHOLD, "max_pause": "P"}, r"max_pause='P' is not an ISO 8601 duration"),
        ("threshold", {**THRESHOLD, "max_pause": "-PT1H"}, r"max_pause='-PT1H' must be longer than zero"),
        ("adaptive", {"percentile": [30], "days": 7}, r"percentile=\[30\] is not a number"),
        ("forecast-window", {"use_source_forecast": "yes"}, r"use_source_forecast='yes' is not a boolean"),
        ("forecast-window", {"min_chunk": {"hours": 1}}, r"min_chunk=\{'hours': 1\} is not a duration"),
    ],
)  # fmt: skip
def test_ill_typed_options_name_the_option_and_the_value(
    name: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_strategy(name, SOURCE, "DE", options)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("P100000D", r"recheck='P100000D' is longer than 36500 days"),  # the ISO path skipped the cap
        ("P1M", r"recheck='P1M' counts years or months.*'P30D'"),  # was read as one minute
    ],
)
def test_iso_durations_are_capped_and_months_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_strategy("threshold", SOURCE, "DE", {**THRESHOLD, "recheck": text})


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("forecast-window", {"history_days": -5}),  # every decision was a silent outage fallback
        ("forecast-window", {"history_days": 0}),
        ("forecast-window", {"history_days": 1e12}),
        ("adaptive", {"percentile": 30, "days": 1e12}),  # was an OverflowError
    ],
)
def test_days_of_history_must_be_positive_and_bounded(name: str, options: dict[str, Any]) -> None:
    key = "days" if name == "adaptive" else "history_days"
    with pytest.raises(InvalidInputError, match=rf"{key}=.* must be more than 0 and at most 36500 days"):
        build_strategy(name, SOURCE, "DE", options)


@pytest.mark.parametrize(
    ("options", "given"),
    [(["x"], r"the list \['x'\]"), ("percentile=30", r"the str 'percentile=30'"), ('{"percentile": 30}', "the str")],
)  # fmt: skip
def test_options_that_are_no_mapping_are_refused_naming_what_was_given(options: Any, given: str) -> None:
    """Were a raw ValueError from dict(): 'dictionary update sequence element #0 has length 1'."""
    expected = rf'must be a mapping \(a JSON object\).*\{{"percentile": 30\}}; got {given}'
    with pytest.raises(InvalidInputError, match=rf"the options of strategy='adaptive' {expected}"):
        build_strategy("adaptive", SOURCE, "DE", options)
    with pytest.raises(InvalidInputError, match=rf"strategy options {expected}"):
        with_outage_policy(options, "open")  # the Prefect task's path, before the strategy is built


def test_numbers_and_booleans_from_rendered_templates_are_read() -> None:
    built = build_strategy("threshold", SOURCE, "DE", {"pause_above": "250", "resume_below": "200.5",
                                                       "max_pause": "PT6H"})  # fmt: skip
    assert (vars(built)["pause_above"], vars(built)["resume_below"]) == (250.0, 200.5)
    window = build_strategy("forecast-window", SOURCE, "DE", {"use_source_forecast": "False"})
    assert vars(window)["use_source_forecast"] is False


def test_every_strategy_keyword_has_exactly_one_schema_entry() -> None:
    for name, cls in STRATEGIES.items():
        keywords = {
            p.name: p
            for p in inspect.signature(cls).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        assert set(STRATEGY_OPTIONS[name]) == set(keywords), name
        for key, option in STRATEGY_OPTIONS[name].items():
            assert option.required == (keywords[key].default is inspect.Parameter.empty), (name, key)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.none()))
def test_the_duration_parser_raises_only_typed_errors(value: Any) -> None:
    try:
        parsed = duration(value, "recheck")
    except CarbonAwareError:
        return
    assert parsed > timedelta(0)
