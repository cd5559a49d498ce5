"""The emissions ledger: energy per interval x the intensity of that interval, summed; never mean x total.

Every interval also carries its run-immediately twin (the same energy, laid back to back from submission,
without pauses), so avoided emissions are computed the same way. The ledger is a list of JSON records: the
JSONL timeline a run writes is enough to recompute the report later.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from carbon_sensors.atomic import atomic_write, atomic_write_text
from carbon_sensors.errors import CarbonAwareError, InvalidInputError, TraceError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.signal import UNIT, IntensitySignal, SignalKind
from carbon_sensors.timeutil import parse_utc, require_utc
from carbon_sensors.units import quantity_text
from carbon_sensors.validation import intensity_problem, short_repr

log = logging.getLogger(__name__)

# Used only when no intensity value was ever available; reported as a fallback (IEA 2019 world average).
WORLD_AVERAGE_INTENSITY = 475.0
WORLD_AVERAGE_SOURCE = "static world average (IEA 2019)"
JOULES_PER_KWH = 3.6e6
_LOOKBACK = pd.Timedelta(hours=2)  # fetch a little before an interval so the period containing it is included

FALLBACK_NO_SOURCE = f"no intensity source or zone configured: used the {WORLD_AVERAGE_SOURCE}, {WORLD_AVERAGE_INTENSITY:g} {UNIT}"
FALLBACK_NO_DATA = (
    f"no intensity data was available: used the {WORLD_AVERAGE_SOURCE}, {WORLD_AVERAGE_INTENSITY:g} {UNIT}"
)
FALLBACK_LAST_KNOWN = "no intensity data for an interval: used the last known value"
FALLBACK_PARTIAL = "intensity data covered only part of an interval: the rest assumed at the covered average"


@dataclass(frozen=True)
class IntensityValue:
    """The intensity that applies to an interval, where it came from, and the fallback used (if any)."""

    value: float
    source: str
    kind: str
    fallback: str | None = None


def mean_over(signal: IntensitySignal, start: pd.Timestamp, end: pd.Timestamp) -> tuple[float | None, float]:
    """Overlap-weighted mean intensity over [start, end) and the fraction of the span with data."""
    end = max(end, start + pd.Timedelta(microseconds=1))  # a zero-length interval takes the value at start
    values = signal.values.dropna()
    starts = pd.DatetimeIndex(values.index).as_unit("ns").asi8
    ends = starts + signal.resolution.as_unit("ns").value
    lo, hi = start.as_unit("ns").value, end.as_unit("ns").value
    overlap = np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0, None).astype("float64")
    covered = float(overlap.sum())
    if covered <= 0:
        return None, 0.0
    return float(np.dot(overlap, values.to_numpy(dtype="float64")) / covered), covered / float(hi - lo)


class IntensityLookup:
    """Intensity for any past interval of one zone, from a provider or trace, with a visible fallback chain.

    Cached signal -> a refetch (at most every `refetch_seconds` of wall time) -> the last known value ->
    the static world average. The fallback used is returned with the value, never hidden.
    """

    def __init__(
        self,
        source: IntensitySource | None,
        zone: str | None,
        *,
        refetch_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source, self.zone = source, zone
        self.refetch_seconds = refetch_seconds
        self._monotonic = monotonic
        self._signal: IntensitySignal | None = None
        self._last_fetch: float | None = None
        self._asked_until: pd.Timestamp | None = None
        self._asked_from: pd.Timestamp | None = None
        self._last_known: IntensityValue | None = None
        self._last_known_end: pd.Timestamp | None = None  # the end of the newest period it was found for

    def _fetch(self, start: pd.Timestamp, end: pd.Timestamp) -> None:
        assert self.source is not None and self.zone is not None
        self._last_fetch, self._asked_until = self._monotonic(), end
        lo = start - _LOOKBACK
        if self._signal is not None and not self._signal.values.empty:
            lo = min(lo, self._signal.start)
        self._asked_from = lo if self._asked_from is None else min(lo, self._asked_from)
        try:
            fresh = self.source.history(self.zone, lo, end)
        except Exception as exc:  # a failing provider must not stop the job; the fallback is reported
            log.warning("intensity for %s unavailable between %s and %s: %s", self.zone, lo, end, exc)
            return
        self._signal = fresh

    def between(self, start: datetime, end: datetime) -> IntensityValue:
        lo, hi = require_utc(start, "start"), require_utc(end, "end")
        if self.source is None or self.zone is None:
            return IntensityValue(
                WORLD_AVERAGE_INTENSITY, WORLD_AVERAGE_SOURCE, SignalKind.AVERAGE.value, FALLBACK_NO_SOURCE
            )
        value, coverage = self._from_cache(lo, hi)
        if coverage < 1.0 and self._may_fetch(lo, hi):
            self._fetch(lo, hi)
            value, coverage = self._from_cache(lo, hi)
        if value is not None and self._signal is not None:
            found = IntensityValue(
                value,
                self._signal.source,
                self._signal.kind.value,
                None if coverage >= 0.999 else FALLBACK_PARTIAL,
            )
            if self._last_known_end is None or hi >= self._last_known_end:
                # the newest value, not the latest asked: a run-now twin's lookup is hours earlier
                self._last_known, self._last_known_end = found, hi
            return found
        if self._last_known is not None:
            return IntensityValue(
                self._last_known.value, self._last_known.source, self._last_known.kind, FALLBACK_LAST_KNOWN
            )
        return IntensityValue(
            WORLD_AVERAGE_INTENSITY, WORLD_AVERAGE_SOURCE, SignalKind.AVERAGE.value, FALLBACK_NO_DATA
        )

    def _may_fetch(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        """Refetch at most every `refetch_seconds`, unless the range reaches a period never asked for.

        A range before everything fetched so far (a run-now twin after a resume) is past data that exists:
        always ask for it rather than guess.
        """
        if self._last_fetch is None or self._monotonic() - self._last_fetch >= self.refetch_seconds:
            return True
        if self._asked_from is not None and start < self._asked_from:
            return True
        step = self._signal.resolution if self._signal is not None else pd.Timedelta(hours=1)
        return self._asked_until is not None and end > self._asked_until.floor(step) + step

    def _from_cache(self, start: pd.Timestamp, end: pd.Timestamp) -> tuple[float | None, float]:
        if self._signal is None or self._signal.values.empty:
            return None, 0.0
        return mean_over(self._signal, start, end)


@dataclass(frozen=True)
class LedgerInterval:
    """Energy used in [start, end), the intensity then, and its run-immediately twin."""

    start: pd.Timestamp
    end: pd.Timestamp
    joules: dict[str, float]
    power_sources: dict[str, str]
    intensity: float
    intensity_source: str
    kind: str
    run_now_start: pd.Timestamp
    run_now_end: pd.Timestamp
    run_now_intensity: float
    fallbacks: tuple[str, ...] = ()
    label: str | None = None

    @property
    def kwh(self) -> float:
        return sum(self.joules.values()) / JOULES_PER_KWH

    def to_record(self) -> dict[str, Any]:
        return {
            "type": "interval",
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "joules": dict(self.joules),
            "power_sources": dict(self.power_sources),
            "intensity": self.intensity,
            "intensity_source": self.intensity_source,
            "kind": self.kind,
            "run_now_start": self.run_now_start.isoformat(),
            "run_now_end": self.run_now_end.isoformat(),
            "run_now_intensity": self.run_now_intensity,
            "fallbacks": list(self.fallbacks),
            "label": self.label,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> LedgerInterval:
        return cls(
            start=parse_utc(rec["start"], "start"),
            end=parse_utc(rec["end"], "end"),
            joules={k: float(v) for k, v in rec["joules"].items()},
            power_sources=dict(rec["power_sources"]),
            intensity=float(rec["intensity"]),
            intensity_source=str(rec["intensity_source"]),
            kind=str(rec["kind"]),
            run_now_start=parse_utc(rec["run_now_start"], "run_now_start"),
            run_now_end=parse_utc(rec["run_now_end"], "run_now_end"),
            run_now_intensity=float(rec["run_now_intensity"]),
            fallbacks=tuple(rec.get("fallbacks", ())),
            label=rec.get("label"),
        )


@dataclass
class PauseRecord:
    """A pause of the run; `end` is None while it lasts."""

    start: pd.Timestamp
    until: pd.Timestamp | None
    reason: str
    end: pd.Timestamp | None = None

    @property
    def seconds(self) -> float:
        return 0.0 if self.end is None else max(0.0, (self.end - self.start).total_seconds())


@dataclass
class AttemptRecord:
    """One start of training (fresh, or resumed after a pause or a crash) and how it ended.

    `status` is None until the attempt ends; an attempt of a finished timeline still without one died
    (SIGKILL, OOM, a lost machine) after its last flush.
    """

    at: pd.Timestamp
    from_step: int
    status: str | None = None

    def start_record(self) -> dict[str, Any]:
        return {"type": "attempt", "event": "start", "at": self.at.isoformat(), "from_step": self.from_step}

    def end_record(self) -> dict[str, Any]:
        return {"type": "attempt", "event": "end", "at": self.at.isoformat(), "status": self.status}


@dataclass(frozen=True)
class EmissionsReport:
    """What a run cost and saved; JSON-able through `to_dict`."""

    zone: str | None
    kind: str | None
    pue: float
    energy_kwh: float
    energy_kwh_with_pue: float
    emissions_g: float
    avg_intensity: float | None
    run_now_emissions_g: float
    avoided_g: float
    active_seconds: float
    paused_seconds: float
    pauses: int
    intensity_sources: list[str]
    power_sources: list[str]
    energy_kwh_by_device: dict[str, float]
    submitted_at: pd.Timestamp
    started_at: pd.Timestamp | None
    finished_at: pd.Timestamp | None
    intervals: int
    fallbacks: list[str] = field(default_factory=list)
    attempts: int = 0
    crashed_attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        def iso(ts: pd.Timestamp | None) -> str | None:
            return None if ts is None else ts.isoformat()

        return {
            "zone": self.zone,
            "kind": self.kind,
            "unit": UNIT,
            "pue": self.pue,
            "energy_kwh": self.energy_kwh,
            "energy_kwh_with_pue": self.energy_kwh_with_pue,
            "emissions_g": self.emissions_g,
            "avg_intensity": self.avg_intensity,
            "run_now_emissions_g": self.run_now_emissions_g,
            "avoided_g": self.avoided_g,
            "active_seconds": self.active_seconds,
            "paused_seconds": self.paused_seconds,
            "pauses": self.pauses,
            "intensity_sources": list(self.intensity_sources),
            "power_sources": list(self.power_sources),
            "energy_kwh_by_device": dict(self.energy_kwh_by_device),
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "intervals": self.intervals,
            "fallbacks": list(self.fallbacks),
            "attempts": self.attempts,
            "crashed_attempts": self.crashed_attempts,
        }


class EmissionsLedger:
    """Intervals of energy with their intensities, pauses, and fallback notes, for one training job."""

    def __init__(
        self,
        *,
        zone: str | None,
        submitted_at: datetime,
        pue: float = 1.0,
        lookup: IntensityLookup | None = None,
        jsonl_path: str | Path | None = None,
    ) -> None:
        if not 1.0 <= pue <= 5.0:
            raise InvalidInputError(
                f"pue={pue} is not a plausible power usage effectiveness; use a value in [1, 5]"
            )
        self.zone = zone
        self.pue = pue
        self.submitted_at = require_utc(submitted_at, "submitted_at")
        self.lookup = lookup if lookup is not None else IntensityLookup(None, zone)
        self.intervals: list[LedgerInterval] = []
        self.pauses: list[PauseRecord] = []
        self.notes: list[str] = []
        self.attempts: list[AttemptRecord] = []
        self.jsonl_path = None if jsonl_path is None else Path(jsonl_path)

    # --- recording -----------------------------------------------------------------------------------------
    @property
    def active_seconds(self) -> float:
        return sum((i.end - i.start).total_seconds() for i in self.intervals)

    def add_energy(
        self,
        start: datetime,
        end: datetime,
        joules: dict[str, float],
        power_sources: dict[str, str],
        *,
        label: str | None = None,
    ) -> LedgerInterval:
        """Record energy used in [start, end); looks up its intensity and that of its run-now twin."""
        lo, hi = require_utc(start, "start"), require_utc(end, "end")
        if hi < lo:
            raise InvalidInputError(f"interval end={hi.isoformat()} is before start={lo.isoformat()}")
        twin_start = self.submitted_at + pd.Timedelta(seconds=self.active_seconds)
        twin_end = twin_start + (hi - lo)
        actual = self.lookup.between(lo, hi)
        twin = self.lookup.between(twin_start, twin_end)
        fallbacks = tuple(dict.fromkeys(r for r in (actual.fallback, twin.fallback) if r))
        interval = LedgerInterval(
            lo, hi, dict(joules), dict(power_sources), actual.value, actual.source, actual.kind,
            twin_start, twin_end, twin.value, fallbacks, label,
        )  # fmt: skip
        self.intervals.append(interval)
        self._append(interval.to_record())
        return interval

    def begin_pause(self, at: datetime, until: datetime | None, reason: str) -> None:
        pause = PauseRecord(
            require_utc(at, "at"), None if until is None else require_utc(until, "until"), reason
        )
        self.pauses.append(pause)
        self._append(_pause_record(pause))

    def end_pause(self, at: datetime) -> None:
        """Close the open pause (if any) when the run resumes."""
        if self.pauses and self.pauses[-1].end is None:
            self.pauses[-1].end = max(require_utc(at, "at"), self.pauses[-1].start)
            self._append({"type": "resume", "at": self.pauses[-1].end.isoformat()})

    def note(self, reason: str) -> None:
        """Record a fallback decided outside the ledger (e.g. a strategy running without data)."""
        self.notes.append(reason)
        self._append({"type": "note", "reason": reason})

    def begin_attempt(self, at: datetime, from_step: int) -> None:
        """A run (fresh or resumed) starts training at step `from_step`."""
        attempt = AttemptRecord(require_utc(at, "at"), from_step)
        self.attempts.append(attempt)
        self._append(attempt.start_record())

    def end_attempt(self, status: str) -> None:
        """The current attempt ended with `status` (completed, paused, stopped) and a checkpoint."""
        if self.attempts and self.attempts[-1].status is None:
            self.attempts[-1].status = status
            self._append(self.attempts[-1].end_record())

    def absorb(self, other: EmissionsLedger) -> int:
        """Add what `other` recorded and this ledger lacks, appending it to the timeline; new intervals counted.

        Two records of one run (a checkpoint's ledger and the timeline, or a worker's timeline and the
        published copy) overlap; an interval is the same interval when its start and end are, so merging
        never counts energy twice and never drops the energy of an attempt that died.
        """
        known = {(i.start, i.end) for i in self.intervals}
        new = [i for i in other.intervals if (i.start, i.end) not in known]
        for interval in new:
            self.intervals.append(interval)
            self._append(interval.to_record())
        paused = {p.start for p in self.pauses}
        for pause in (p for p in other.pauses if p.start not in paused):
            self.pauses.append(pause)
            self._append(_pause_record(pause))
            if pause.end is not None:
                self._append({"type": "resume", "at": pause.end.isoformat()})
        for reason in (n for n in dict.fromkeys(other.notes) if n not in self.notes):
            self.note(reason)
        started = {a.at for a in self.attempts}
        for attempt in (a for a in other.attempts if a.at not in started):
            self.attempts.append(attempt)
            self._append(attempt.start_record())
            if attempt.status is not None:
                self._append(attempt.end_record())
        return len(new)

    # --- output --------------------------------------------------------------------------------------------
    def report(self) -> EmissionsReport:
        return summarize(
            self.zone, self.pue, self.submitted_at, self.intervals, self.pauses, self.notes, self.attempts
        )

    def to_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = [
            {"type": "header", "version": 1, "zone": self.zone, "pue": self.pue,
             "submitted_at": self.submitted_at.isoformat(), "unit": UNIT},
        ]  # fmt: skip
        events: list[tuple[pd.Timestamp, int, list[dict[str, Any]]]] = []
        events += [(i.start, 1, [i.to_record()]) for i in self.intervals]
        for p in self.pauses:
            rec = [_pause_record(p)] + (
                [{"type": "resume", "at": p.end.isoformat()}] if p.end is not None else []
            )
            events.append((p.start, 0, rec))
        for _, _, recs in sorted(events, key=lambda e: (e[0], e[1])):
            records += recs
        records += [{"type": "note", "reason": n} for n in self.notes]
        for attempt in self.attempts:
            records += [attempt.start_record()] + ([attempt.end_record()] if attempt.status else [])
        return records

    @classmethod
    def from_records(
        cls,
        records: Iterable[dict[str, Any]],
        *,
        lookup: IntensityLookup | None = None,
        jsonl_path: str | Path | None = None,
    ) -> EmissionsLedger:
        located = [(f"record {n}", rec) for n, rec in enumerate(records, 1)]
        return _load_ledger(cls, located, "emissions ledger", lookup, jsonl_path)

    def write_jsonl(self, path: str | Path | None = None) -> Path:
        """Write the whole timeline atomically (temp file + rename); later records are appended to it."""
        target = Path(path) if path is not None else self.jsonl_path
        if target is None:
            raise InvalidInputError("write_jsonl needs a path (the ledger has no jsonl_path)")
        text = "".join(json.dumps(r) + "\n" for r in self.to_records())
        atomic_write_text(target, text)
        return target

    def _append(self, record: dict[str, Any]) -> None:
        if self.jsonl_path is not None and self.jsonl_path.exists():
            with self.jsonl_path.open("r+b") as fh:
                _cut_torn_tail(fh)
                fh.write((json.dumps(record) + "\n").encode("utf-8"))
                fh.flush()  # on disk before training goes on: a killed run keeps its energy to here
                os.fsync(fh.fileno())


def _cut_torn_tail(fh: BinaryIO) -> None:
    """Leave `fh` at the end of its last whole line: a process killed mid-append tears the last one, which
    `read_jsonl` skips, and a record appended right after it would be glued to it into a line nobody reads.
    A last line that is whole but lacks its newline (as `read_jsonl` reads it: a record) gets one."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return
    fh.seek(end - 1)
    if fh.read(1) == b"\n":
        return
    cut, pos = 0, end  # 0 if no newline at all: the one line there is the last
    while pos > 0:
        start = max(0, pos - 65536)
        fh.seek(start)
        newline = fh.read(pos - start).rfind(b"\n")
        if newline >= 0:
            cut = start + newline + 1
            break
        pos = start
    fh.seek(cut)
    try:
        json.loads(fh.read(end - cut))
    except ValueError:  # not JSON (or not UTF-8): torn
        log.warning("%s: dropped a torn last line (%d bytes) before appending", fh.name, end - cut)
        fh.truncate(cut)
        fh.seek(cut)
    else:
        fh.write(b"\n")


def merge_timeline(target: Path, other: Path) -> None:
    """Append to timeline `target` whatever timeline `other` holds and it lacks; copy `other` if no `target`.

    Two copies of one run's timeline (a worker's own, the published one) each may hold records the other
    lacks; merged this way, nothing is lost and nothing counted twice (see `EmissionsLedger.absorb`).
    """
    if not target.is_file():
        data = other.read_bytes()  # copied as bytes: a damaged copy is reported when read, by read_jsonl
        atomic_write(target, lambda out: out.write(data))
        return
    mine = read_jsonl(target)
    mine.jsonl_path = target
    mine.absorb(read_jsonl(other))


def read_jsonl(path: str | Path) -> EmissionsLedger:
    """Load a ledger from its JSONL timeline (to recompute the report later)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read emissions timeline {p}: {exc}") from exc
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:  # bytes, so the message can say on which line
        bad_line = data.count(b"\n", 0, exc.start) + 1
        raise TraceError(
            f"{p}, line {bad_line}: byte {data[exc.start]:#04x} is not UTF-8 text; an emissions timeline is the "
            "JSON lines file a run writes (emissions.jsonl), not a binary or otherwise encoded file"
        ) from exc
    located: list[tuple[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            located.append((f"{p}, line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            if n == len(lines):  # a process killed mid-append leaves at most a torn last line
                log.warning("%s: ignored a torn last line", p)
                break
            raise TraceError(f"{p}, line {n}: not JSON ({exc})") from exc
        except RecursionError as exc:
            raise TraceError(f"{p}, line {n}: not JSON (nested too deeply to parse)") from exc
    return _load_ledger(EmissionsLedger, located, str(p), None, None)


_RECORD_ERRORS = (LookupError, TypeError, ValueError, AttributeError, CarbonAwareError)
"""What a record of the wrong shape raises while it is read (a missing key, a wrong type, a bad time)."""


def _load_ledger(
    cls: type[EmissionsLedger],
    located: list[tuple[str, Any]],
    where: str,
    lookup: IntensityLookup | None,
    jsonl_path: str | Path | None,
) -> EmissionsLedger:
    """A ledger from (location, record) pairs; a bad record is a TraceError that names its location."""
    if not located or not isinstance(located[0][1], dict) or located[0][1].get("type") != "header":
        at = located[0][0] if located else where
        raise TraceError(f"{at}: an emissions ledger must start with its header record")
    head_at, head = located[0]
    try:
        ledger = cls(
            zone=head["zone"], submitted_at=parse_utc(head["submitted_at"], "submitted_at"),
            pue=float(head["pue"]), lookup=lookup, jsonl_path=jsonl_path,
        )  # fmt: skip
    except _RECORD_ERRORS as exc:
        raise _bad_record(head_at, "header", exc) from exc
    for at, rec in located[1:]:
        if not isinstance(rec, dict):
            raise TraceError(f"{at}: {short_repr(rec)} is not a record; expected a JSON object")
        kind = rec.get("type")
        if kind not in ("interval", "pause", "resume", "note", "attempt"):
            raise TraceError(
                f"{at}: unknown emissions ledger record type {short_repr(kind)}; "
                "expected interval, pause, resume, note or attempt"
            )
        try:
            _add_record(ledger, kind, rec)
        except _RECORD_ERRORS as exc:
            raise _bad_record(at, kind, exc) from exc
    return ledger


def _bad_record(at: str, kind: str, exc: Exception) -> TraceError:
    why = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)[:300]
    return TraceError(f"{at}: bad {kind} record: {why}")


def _add_record(ledger: EmissionsLedger, kind: str, rec: dict[str, Any]) -> None:
    if kind == "interval":
        _check_interval(rec)
        ledger.intervals.append(LedgerInterval.from_record(rec))
    elif kind == "pause":
        until = rec.get("until")
        ledger.pauses.append(
            PauseRecord(parse_utc(rec["start"], "start"), parse_utc(until, "until") if until else None,
                        str(rec["reason"]))
        )  # fmt: skip
    elif kind == "resume":
        if not ledger.pauses:
            raise ValueError("a resume without a pause before it")
        ledger.pauses[-1].end = parse_utc(rec["at"], "at")
    elif kind == "attempt":
        _add_attempt(ledger, rec)
    else:
        ledger.notes.append(str(rec["reason"]))


def _add_attempt(ledger: EmissionsLedger, rec: dict[str, Any]) -> None:
    """An attempt's start record opens it; its end record (same `at`) gives it a status."""
    at = parse_utc(rec["at"], "at")
    if rec.get("event") == "end":
        ended = [a for a in ledger.attempts if a.at == at]
        if not ended:
            raise ValueError(f"an attempt end at {at.isoformat()} without its start")
        ended[-1].status = str(rec["status"])
    else:
        ledger.attempts.append(AttemptRecord(at, int(rec["from_step"])))


def _check_interval(rec: dict[str, Any]) -> None:
    """The shapes `LedgerInterval.from_record` and the report rely on; ValueError naming the first bad one."""
    joules, sources = rec.get("joules"), rec.get("power_sources")
    if not isinstance(joules, dict) or any(_amount(v) is None for v in joules.values()):
        raise ValueError(f"joules={short_repr(joules)} must map devices to numbers >= 0")
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise ValueError(f"power_sources={short_repr(sources)} must map devices to source names")
    for name in ("intensity", "run_now_intensity"):
        value = rec.get(name)
        number = _amount(value)
        if number is None or intensity_problem(number) is not None:
            raise ValueError(f"{name}={short_repr(value)} must be an intensity in gCO2eq/kWh")
    fallbacks = rec.get("fallbacks", [])
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise ValueError(f"fallbacks={short_repr(fallbacks)} must be a list of reasons")
    for name in ("intensity_source", "kind"):
        if not isinstance(rec.get(name), str):
            raise ValueError(f"{name}={short_repr(rec.get(name))} must be a string")
    if rec.get("label") is not None and not isinstance(rec["label"], str):
        raise ValueError(f"label={short_repr(rec['label'])} must be a string or null")


def _amount(value: Any) -> float | None:
    """A JSON number that is finite and >= 0, as a float; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def summarize(
    zone: str | None,
    pue: float,
    submitted_at: pd.Timestamp,
    intervals: list[LedgerInterval],
    pauses: list[PauseRecord],
    notes: list[str],
    attempts: Sequence[AttemptRecord] = (),
) -> EmissionsReport:
    """The report, from the records alone: sum of energy_i x PUE x intensity_i over intervals."""
    energy_kwh = sum(i.kwh for i in intervals)
    emissions = sum(i.kwh * pue * i.intensity for i in intervals)
    run_now = sum(i.kwh * pue * i.run_now_intensity for i in intervals)
    by_device: dict[str, float] = {}
    for i in intervals:
        for device, joules in i.joules.items():
            by_device[device] = by_device.get(device, 0.0) + joules / JOULES_PER_KWH
    reasons: Counter[str] = Counter(r for i in intervals for r in i.fallbacks)
    reasons.update(notes)
    kinds = sorted({i.kind for i in intervals})
    return EmissionsReport(
        zone=zone,
        kind=kinds[0] if len(kinds) == 1 else ("+".join(kinds) or None),
        pue=pue,
        energy_kwh=energy_kwh,
        energy_kwh_with_pue=energy_kwh * pue,
        emissions_g=emissions,
        avg_intensity=emissions / (energy_kwh * pue) if energy_kwh > 0 else None,
        run_now_emissions_g=run_now,
        avoided_g=run_now - emissions,
        active_seconds=sum((i.end - i.start).total_seconds() for i in intervals),
        paused_seconds=sum(p.seconds for p in pauses),
        pauses=len(pauses),
        intensity_sources=sorted({i.intensity_source for i in intervals}),
        power_sources=sorted({s for i in intervals for s in i.power_sources.values()}),
        energy_kwh_by_device=by_device,
        submitted_at=submitted_at,
        started_at=min(i.start for i in intervals) if intervals else None,
        finished_at=max(i.end for i in intervals) if intervals else None,
        intervals=len(intervals),
        fallbacks=[f"{reason} ({count}x)" for reason, count in reasons.items()],
        attempts=len(attempts),
        crashed_attempts=sum(1 for a in attempts if a.status is None),
    )


def _pause_record(p: PauseRecord) -> dict[str, Any]:
    return {
        "type": "pause",
        "start": p.start.isoformat(),
        "until": None if p.until is None else p.until.isoformat(),
        "reason": p.reason,
    }


# The report's fields for people, in reading order: field, label, base unit (shown scaled to its size).
REPORT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("zone", "Grid zone", ""),
    ("kind", "Signal kind", ""),
    ("energy_kwh", "Energy", "kWh"),
    ("energy_kwh_with_pue", "Energy with PUE", "kWh"),
    ("pue", "PUE", ""),
    ("emissions_g", "Emissions", "gCO2eq"),
    ("avg_intensity", "Average intensity", "gCO2eq/kWh"),
    ("run_now_emissions_g", "Emissions if run immediately", "gCO2eq"),
    ("avoided_g", "Avoided emissions", "gCO2eq"),
    ("active_seconds", "Active time", "s"),
    ("paused_seconds", "Paused time", "s"),
    ("pauses", "Pauses", ""),
    ("intensity_sources", "Intensity sources", ""),
    ("power_sources", "Power sources", ""),
    ("energy_kwh_by_device", "Energy by device", "kWh"),
    ("submitted_at", "Submitted", "UTC"),
    ("started_at", "Started", "UTC"),
    ("finished_at", "Finished", "UTC"),
    ("intervals", "Measured intervals", ""),
    ("fallbacks", "Fallbacks", ""),
    ("attempts", "Attempts", ""),
    ("crashed_attempts", "Crashed attempts", ""),
)


def report_lines(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A report (`EmissionsReport.to_dict()`) as (label, text) for people: Wh or kWh, gCO2eq or kgCO2eq,
    s/min/h to 3 significant digits; JSON keeps full precision. Fields it does not know follow by name."""
    lines = [(label, _field_text(report.get(name), unit)) for name, label, unit in REPORT_FIELDS]
    known = {name for name, _, _ in REPORT_FIELDS} | {"unit"}
    return lines + [(name, _field_text(report[name], "")) for name in sorted(set(report) - known)]


def report_summary(report: Mapping[str, Any]) -> str:
    """One log line of a report in readable units: energy, emissions, avoided, pauses (the faces' last line)."""
    wanted = ("energy_kwh_with_pue", "emissions_g", "avoided_g", "pauses", "paused_seconds")
    units = {name: (label, unit) for name, label, unit in REPORT_FIELDS}
    return "; ".join(
        f"{units[n][0]}: {_field_text(report.get(n), units[n][1])}" for n in wanted if n in units
    )


def _field_text(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_field_text(v, unit)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return "; ".join(_field_text(v, "") for v in value) or "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)  # times are ISO 8601 with their +00:00
    if unit in ("", "UTC"):
        return str(value) if isinstance(value, int) else f"{value:g}"
    return quantity_text(float(value), unit)
