"""How commands show a signal: a table, JSON, or a PNG plot; shared by every command group."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from carbon_sensors import charts
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.signal import IntensitySignal


def add_output_options(parser: argparse.ArgumentParser, plotted: str) -> None:
    """`--json` or `--plot PNG` (never both): the output choice of every command that returns a signal."""
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument("--plot", metavar="PNG", help=f"draw {plotted} to this PNG file")


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned text table (no extra dependency, copy-pastes cleanly)."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def show_signal(signal: IntensitySignal, *, as_json: bool = False, plot: str | None = None) -> None:
    """The usual output of a command that returns a signal: JSON, a PNG plot, or a labelled table."""
    if as_json:
        print_json(signal.to_dict())
    elif plot:
        print(f"wrote {plot_signal(signal, plot)}")
    else:
        print(f"# {signal.label}")
        print_table(signal.to_records(), ["timestamp", "value"])
        for note in signal.notes:
            print(f"# note: {note}")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def plot_signal(
    signal: IntensitySignal,
    path: str | Path,
    title: str | None = None,
    windows: Sequence[tuple[datetime, datetime]] = (),
    now: datetime | None = None,
) -> Path:
    """Draw the signal (its prediction interval, if any, "now" and any chosen run windows) to a PNG file."""
    png = charts.forecast_chart(signal, now=now, windows=windows, title=title or signal.label, fmt="png")
    return write_plot(path, png)


def write_plot(path: str | Path, png: bytes) -> Path:
    """Write `--plot`'s PNG; a path that cannot take it is the CLI's usual error (exit 2), not a traceback."""
    out = Path(path)
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise InvalidInputError(
            f"--plot {str(path)!r} cannot be written ({exc.strerror or exc}); "
            "give a PNG file path in an existing folder you can write to, e.g. --plot plan.png"
        ) from exc
    return out
