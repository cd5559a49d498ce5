"""Reading an emissions timeline back (`read_jsonl`): every bad line is a TraceError naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from carbon_sensors.emissions import EmissionsLedger, merge_timeline, read_jsonl
from carbon_sensors.errors import TraceError

T0 = pd.Timestamp("2023-06-01T00:00Z")


def good_lines() -> list[str]:
    """A real timeline written by the ledger: header, one interval, a pause and its resume, a note."""
    ledger = EmissionsLedger(zone="DE", submitted_at=T0)
    ledger.add_energy(T0, T0 + pd.Timedelta(minutes=30), {"cpu": 3.6e6}, {"cpu": "rapl"})
    ledger.begin_pause(T0 + pd.Timedelta(minutes=30), T0 + pd.Timedelta(hours=1), "dirty grid")
    ledger.end_pause(T0 + pd.Timedelta(hours=1))
    ledger.note("fallback: no data")
    return [json.dumps(r) for r in ledger.to_records()]


def changed(line: str, **fields: object) -> str:
    record = json.loads(line)
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v != "<drop>"})


def test_a_good_timeline_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(good_lines()) + "\n")
    ledger = read_jsonl(path)
    assert len(ledger.intervals) == 1 and len(ledger.pauses) == 1 and ledger.notes == ["fallback: no data"]
    assert ledger.pauses[0].seconds == 1800


@pytest.mark.parametrize(
    ("line", "bad", "message"),
    [
        (2, lambda s: "[1, 2]", r"line 2: .*expected a JSON object"),  # was AttributeError
        (
            2,
            lambda s: changed(s, joules="<drop>"),
            r"line 2: bad interval record: joules=None must map devices",
        ),  # KeyError
        (2, lambda s: changed(s, joules=5), r"line 2: bad interval record"),  # AttributeError
        (2, lambda s: changed(s, intensity=[1]), r"line 2: bad interval record"),  # TypeError
        (2, lambda s: changed(s, start="yesterday"), r"line 2: bad interval record: start='yesterday'"),
        (1, lambda s: changed(s, pue="<drop>"), r"line 1: bad header record: missing 'pue'"),
        (1, lambda s: changed(s, pue="abc"), r"line 1: bad header record"),  # ValueError
        (1, lambda s: changed(s, type="interval"), r"line 1: .*must start with its header record"),
        (3, lambda s: changed(s, start="<drop>"), r"line 3: bad pause record: missing 'start'"),
        (4, lambda s: changed(s, at=None), r"line 4: bad resume record"),
        (5, lambda s: changed(s, type="party"), r"line 5: unknown emissions ledger record type 'party'"),
        (2, lambda s: "[" * 100_000 + "]" * 100_000, r"line 2: not JSON"),  # was RecursionError
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: int, bad: object, message: str) -> None:
    lines = good_lines()
    lines[line - 1] = bad(lines[line - 1])  # type: ignore[operator]
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceError, match=message) as info:
        read_jsonl(path)
    assert str(path) in str(info.value)


def test_an_empty_timeline_says_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("\n\n")
    with pytest.raises(TraceError, match=r"t\.jsonl: .*must start with its header record"):
        read_jsonl(path)


def test_a_timeline_that_is_not_utf8_names_file_and_line(tmp_path: Path) -> None:
    """`carbon-aware report` on a binary or Latin-1 file raised a raw UnicodeDecodeError."""
    path = tmp_path / "t.jsonl"
    path.write_bytes(("\n".join(good_lines()[:2]) + "\n").encode() + b'{"type": "note", "text": "caf\xe9"}\n')
    with pytest.raises(TraceError, match=r"t\.jsonl, line 3: byte 0xe9 is not UTF-8 text") as info:
        read_jsonl(path)
    assert str(path) in str(info.value)


def test_merging_into_no_timeline_copies_it_byte_for_byte(tmp_path: Path) -> None:
    """The mirror's first copy of a published timeline: bytes, so a damaged one is named when read, not a raw
    UnicodeDecodeError while copying."""
    published, local = tmp_path / "published.jsonl", tmp_path / "local.jsonl"
    published.write_bytes(("\n".join(good_lines()[:2]) + "\n").encode() + b"\xe9\n")
    merge_timeline(local, published)
    assert local.read_bytes() == published.read_bytes()
    with pytest.raises(TraceError, match=r"local\.jsonl, line 3"):
        read_jsonl(local)


def test_records_appended_after_a_torn_last_line_stay_readable(tmp_path: Path) -> None:
    """Reproduced: a worker killed mid-append tore the last line; the retry appended right after it, gluing
    the next record to it mid-file, and every later read of the timeline failed ('not JSON')."""
    lines = good_lines()
    published, local = tmp_path / "published.jsonl", tmp_path / "local.jsonl"
    published.write_text("\n".join(lines) + "\n")
    local.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # torn mid-record
    merge_timeline(local, published)  # the retry's pull: appends what the local copy lacks
    merged, whole = read_jsonl(local), read_jsonl(published)
    assert len(merged.pauses) == len(whole.pauses) == 1 and merged.notes == whole.notes
    assert merged.report().energy_kwh == whole.report().energy_kwh

    whole_last = tmp_path / "whole_last.jsonl"  # the last record whole, only its newline missing: kept
    whole_last.write_text("\n".join(lines[:3]))
    merge_timeline(whole_last, published)
    assert whole_last.read_text().splitlines()[:3] == lines[:3]  # the third record stays, on its own line
    assert read_jsonl(whole_last).notes == whole.notes
