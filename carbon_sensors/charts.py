"""Charts people look at instead of reading tables, drawn on the server with matplotlib as SVG or PNG bytes.

Three pictures, shared by the Airflow page, the Prefect artifacts and the CLI:

- `forecast_chart`: a zone's recent history and forecast with its prediction interval, "now", the chosen
  window(s) of a plan and a sensor's threshold;
- `run_chart`: one training run's intensity over time with its paused spans shaded, and energy per epoch;
- `runs_chart`: recent runs side by side: emissions, avoided emissions, energy and pauses.

matplotlib is imported inside the functions (Agg backend, no display): importing this module, and so any
operator or flow module that uses it, stays cheap for a DAG parse. The output is self-contained: no fonts,
scripts or images are fetched when it is shown.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
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
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), height_ratios=(3, 2), layout="constrained")
    times = [i.start for i in ledger.intervals] + [ledger.intervals[-1].end]
    values = [i.intensity for i in ledger.intervals]
    top.stairs(values, times, baseline=None, linewidth=2, label="while training")
    for n, pause in enumerate(ledger.pauses):
        end = pause.end or pause.until or ledger.intervals[-1].end
        top.axvspan(pause.start, end, color=_PAUSE, alpha=0.35, label="paused" if n == 0 else None)  # type: ignore[arg-type]
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
    plt = _pyplot()
    fig, (grams, energy, pauses) = plt.subplots(3, 1, figsize=(10, 7), sharex=True, layout="constrained")
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
    pauses.yaxis.get_major_locator().set_params(integer=True)
    pauses.set_xticks(x, [r.label for r in runs], rotation=20, ha="right", fontsize="small")
    for ax in (grams, energy, pauses):
        ax.grid(alpha=0.3, axis="y")
    return _render(fig, fmt)


def savings_chart(report: dict[str, Any], *, fmt: Format = "png") -> bytes:
    """A backtest's mean savings (%) per policy, jobs run whole vs interruptible (`run_backtest`'s report)."""
    mean: dict[str, dict[str, dict[str, float]]] = report["mean"]
    policies = list(mean)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
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


def _edges(signal: IntensitySignal) -> list[datetime]:
    """Period boundaries: each value holds from its start to the next period's, the last one included."""
    starts = list(signal.values.index)
    return [*starts, starts[-1] + signal.resolution]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(fig: Figure, fmt: Format) -> bytes:
    if fmt not in FORMATS:
        raise InvalidInputError(f"chart format {fmt!r} is not valid; use one of {list(FORMATS)}")
    import matplotlib.pyplot as plt

    out = io.BytesIO()
    # Text as text (no glyph outlines) keeps SVGs small and searchable; no date keeps output reproducible.
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "carbon-aware"}):
        fig.savefig(
            out, format=fmt, dpi=100, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None
        )
    plt.close(fig)
    return out.getvalue()
