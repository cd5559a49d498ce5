"""Charts people look at instead of reading tables, drawn on the server with matplotlib as SVG or PNG bytes.

Three pictures, shared by the Airflow page, the Prefect artifacts and the CLI:

- `forecast_chart`: a zone's recent history and forecast with its prediction interval, "now", the chosen
  window(s) of a plan and a sensor's threshold;
- `run_chart`: one training run's intensity over time with its paused spans shaded, and energy per epoch;
- `runs_chart`: recent runs side by side: emissions, avoided emissions, energy and pauses;
- `savings_chart`: a backtest's mean savings per policy (the CLI's `backtest --plot`).

matplotlib is imported inside the functions, and only its object API (no pyplot: no display, no global
state, so an api-server may draw in threads side by side): importing this module, and so any operator or
flow module that uses it, stays cheap for a DAG parse. The output is self-contained: text is drawn as
outlines, and no font, script or image is fetched when it is shown.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.signal import UNIT, IntensitySignal
from carbon_sensors.units import energy_scale, mass_scale

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from carbon_sensors.emissions import EmissionsLedger

Format = Literal["svg", "png"]
FORMATS: tuple[Format, ...] = ("svg", "png")
Window = tuple[datetime, datetime]

# Colours people read the same way everywhere: green for the chosen window, grey for pauses.
_WINDOW, _PAUSE, _THRESHOLD, _NOW = "tab:green", "0.6", "tab:red", "0.2"
_RECORDED, _FORECAST = "0.3", "tab:blue"
_GAP = timedelta(seconds=1)  # intervals or pauses further apart than this are drawn apart
# The SVG preamble an HTML page must not carry inline (XML prolog, DTD, RDF metadata, namespaces).
_SVG_PREAMBLE = re.compile(
    r"<\?xml[^>]*\?>\s*|<!DOCTYPE[^>]*>\s*|<metadata>.*?</metadata>\s*|\s+xmlns(?::\w+)?=\"[^\"]*\"", re.S
)


@dataclass(frozen=True)
class RunPoint:
    """One run's bars in `runs_chart`: what it emitted and avoided, the energy it used, how often it paused."""

    label: str
    emissions_g: float
    avoided_g: float
    energy_kwh: float
    pauses: int
    paused_seconds: float

    @classmethod
    def from_report(cls, label: str, report: dict[str, Any]) -> RunPoint:
        """From an emissions report's `to_dict()` (the training operator's XCom, the Prefect report)."""
        return cls(
            label=label,
            emissions_g=float(report["emissions_g"]),
            avoided_g=float(report["avoided_g"]),
            energy_kwh=float(report["energy_kwh_with_pue"]),
            pauses=int(report["pauses"]),
            paused_seconds=float(report["paused_seconds"]),
        )


def forecast_chart(
    forecast: IntensitySignal,
    *,
    history: IntensitySignal | None = None,
    now: datetime | None = None,
    windows: Sequence[Window] = (),
    threshold: float | None = None,
    title: str | None = None,
    fmt: Format = "svg",
) -> bytes:
    """History (solid) then forecast (dashed) with its interval, "now", the plan's window(s), the threshold."""
    if history is not None:
        forecast.require_compatible(history)
    fig = _figure(10, 4.5)
    ax = fig.subplots()
    if history is not None and len(history):
        ax.stairs(
            history.values.to_numpy(), _edges(history), baseline=None, color=_RECORDED,
            label=f"recorded ({history.source})",
        )  # fmt: skip
    ax.stairs(
        forecast.values.to_numpy(), _edges(forecast), baseline=None, linestyle="--", color=_FORECAST,
        label=f"forecast ({forecast.source})",
    )  # fmt: skip
    if forecast.lower is not None and forecast.upper is not None:
        ax.stairs(
            forecast.upper.to_numpy(), _edges(forecast), baseline=forecast.lower.to_numpy(), fill=True,
            color=_FORECAST, alpha=0.2, linewidth=0, label="prediction interval",
        )  # fmt: skip
    for i, (begin, end) in enumerate(windows):
        # matplotlib converts datetimes on a date axis; its stubs only declare floats
        ax.axvspan(begin, end, color=_WINDOW, alpha=0.2, label="chosen window" if i == 0 else None)  # type: ignore[arg-type]
    if threshold is not None:
        ax.axhline(threshold, color=_THRESHOLD, linestyle=":", label=f"threshold {threshold:,.0f} {UNIT}")
    if now is not None:
        ax.axvline(now, color=_NOW, linewidth=1, label="now")  # type: ignore[arg-type]
    ax.set_ylabel(f"{forecast.kind.value} intensity ({UNIT})")
    ax.set_xlabel("time (UTC)")
    ax.set_title(title or f"{forecast.zone}: carbon intensity")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", fontsize="small", ncols=3)
    return _render(fig, fmt)


def run_chart(
    ledger: EmissionsLedger,
    epoch_kwh: Sequence[tuple[int, float]],
    *,
    title: str | None = None,
    fmt: Format = "png",
) -> bytes:
    """Top: the intensity of each measured interval, paused spans shaded. Bottom: energy per epoch."""
    if not ledger.intervals:
        raise InvalidInputError("run_chart needs a ledger with at least one measured interval")
    fig = _figure(10, 6)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
    edges, values = _measured(ledger)
    top.stairs(values, edges, baseline=None, linewidth=2, color=_FORECAST, label="while training")
    middles = [i.start + (i.end - i.start) / 2 for i in ledger.intervals]
    top.plot(middles, [i.intensity for i in ledger.intervals], "o", markersize=3, color=_FORECAST)
    for n, (begin, end) in enumerate(_paused_spans(ledger)):
        top.axvspan(begin, end, color=_PAUSE, alpha=0.35, linewidth=0, label="paused" if n == 0 else None)  # type: ignore[arg-type]
    kind = ledger.intervals[0].kind
    top.set_ylabel(f"{kind} intensity ({UNIT})")
    top.set_xlabel("time (UTC)")
    top.set_title(title or f"{ledger.zone}: training run")
    top.legend(loc="upper left", fontsize="small")
    top.grid(alpha=0.3)
    factor, unit = energy_scale(max((kwh for _, kwh in epoch_kwh), default=0.0))
    epochs = [str(epoch) for epoch, _ in epoch_kwh]
    bottom.bar(epochs, [kwh * factor for _, kwh in epoch_kwh], color="tab:orange")
    bottom.set_xlabel("epoch")
    bottom.set_ylabel(f"energy ({unit})")
    bottom.grid(alpha=0.3, axis="y")
    return _render(fig, fmt)


def runs_chart(runs: Sequence[RunPoint], *, title: str = "Recent runs", fmt: Format = "svg") -> bytes:
    """Per run (oldest left): emissions and avoided emissions, energy, and pauses with their hours."""
    if not runs:
        raise InvalidInputError("runs_chart needs at least one run")
    fig = _figure(10, 7)
    grams, energy, pauses = fig.subplots(3, 1, sharex=True)
    x = list(range(len(runs)))
    g_factor, g_unit = mass_scale(max(max(abs(r.emissions_g), abs(r.avoided_g)) for r in runs))
    grams.bar([i - 0.2 for i in x], [r.emissions_g * g_factor for r in runs], 0.4, label="emitted")
    grams.bar(
        [i + 0.2 for i in x], [r.avoided_g * g_factor for r in runs], 0.4, label="avoided", color=_WINDOW
    )
    grams.set_ylabel(g_unit)
    grams.legend(loc="upper left", fontsize="small")
    grams.set_title(title)
    e_factor, e_unit = energy_scale(max(r.energy_kwh for r in runs))
    energy.bar(x, [r.energy_kwh * e_factor for r in runs], color="tab:orange")
    energy.set_ylabel(f"energy ({e_unit})")
    bars = pauses.bar(x, [r.pauses for r in runs], color=_PAUSE)
    pauses.bar_label(bars, [f"{r.paused_seconds / 3600:.1f} h" for r in runs], fontsize="small")
    pauses.set_ylabel("pauses")
    pauses.set_ylim(0, max(r.pauses for r in runs) * 1.25 + 0.5)  # room for the hours above the bars
    pauses.yaxis.get_major_locator().set_params(integer=True)
    pauses.set_xticks(x, [r.label for r in runs], fontsize="small")
    for ax in (grams, energy, pauses):
        ax.grid(alpha=0.3, axis="y")
    return _render(fig, fmt)


def savings_chart(report: dict[str, Any], *, fmt: Format = "png") -> bytes:
    """A backtest's mean savings (%) per policy, jobs run whole vs interruptible (`run_backtest`'s report)."""
    mean: dict[str, dict[str, dict[str, float]]] = report["mean"]
    policies = list(mean)
    fig = _figure(8, 4)
    ax = fig.subplots()
    x = list(range(len(policies)))
    for offset, kind in ((-0.2, "contiguous"), (0.2, "interruptible")):
        bars = ax.bar(
            [i + offset for i in x], [mean[p][kind]["savings_pct"] for p in policies], 0.4, label=kind
        )
        ax.bar_label(bars, fmt="%.1f", fontsize="small")
    ax.set_xticks(x, policies)
    ax.set_ylabel("savings vs run now (%)")
    ax.set_title(
        f"Backtest: mean over {len(report['traces'])} trace(s), forecast {report['config']['forecast']}"
    )
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3, axis="y")
    return _render(fig, fmt)


def inline_svg(svg: bytes) -> str:
    """An SVG chart as markup to place inside an HTML page (HTML5 needs no XML prolog or namespaces)."""
    return _SVG_PREAMBLE.sub("", svg.decode("utf-8")).strip()


def _measured(ledger: EmissionsLedger) -> tuple[np.ndarray[Any, np.dtype[np.datetime64]], list[float]]:
    """Stair edges and values of the measured intervals, with a gap (NaN) wherever nothing was measured."""
    edges: list[datetime] = [ledger.intervals[0].start]
    values: list[float] = []
    for interval in ledger.intervals:
        if interval.start - edges[-1] > _GAP:
            edges.append(interval.start)
            values.append(math.nan)
        edges.append(interval.end)
        values.append(interval.intensity)
    return _utc_array(edges), values


def _paused_spans(ledger: EmissionsLedger) -> list[tuple[datetime, datetime]]:
    """The pauses as spans, touching ones merged (a recheck that stays paused starts the next one at once)."""
    spans: list[tuple[datetime, datetime]] = []
    for pause in ledger.pauses:
        end = pause.end or pause.until or ledger.intervals[-1].end
        if spans and pause.start - spans[-1][1] <= _GAP:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((pause.start, end))
    return spans


def _edges(signal: IntensitySignal) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """Period boundaries: each value holds from its start to the next period's, the last one included."""
    starts = list(signal.values.index)
    return _utc_array([*starts, starts[-1] + signal.resolution])


def _utc_array(moments: Sequence[datetime]) -> np.ndarray[Any, np.dtype[np.datetime64]]:
    """UTC moments as numpy datetimes, which matplotlib's date axis takes (and its type stubs accept)."""
    return pd.DatetimeIndex(list(moments)).tz_convert("UTC").tz_localize(None).to_numpy()


def _figure(width: float, height: float) -> Figure:
    """A figure of its own, not pyplot's: no global state, so requests may draw in threads side by side."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _render(fig: Figure, fmt: Format) -> bytes:
    if fmt not in FORMATS:
        raise InvalidInputError(f"chart format {fmt!r} is not valid; use one of {list(FORMATS)}")
    out = io.BytesIO()
    # No creation date: the same data gives the same bytes.
    fig.savefig(out, format=fmt, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
    return out.getvalue()
