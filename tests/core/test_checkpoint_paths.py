"""Checkpoint paths stay inside their store: safe run-key segments, a confined LATEST pointer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carbon_sensors.checkpoint_store import CheckpointStore
from carbon_sensors.errors import InvalidInputError, UnsafePathError
from carbon_sensors.paths import confine, run_key, safe_segment
from carbon_sensors.training import find_checkpoint, save_checkpoint
from carbon_sensors.training.checkpoint import LATEST


@pytest.mark.parametrize("hostile", ["..", ".", "a/../..", "../etc", "a\\b", "x/y", "/abs"])
def test_a_hostile_segment_becomes_one_folder_name(tmp_path: Path, hostile: str) -> None:
    segment = safe_segment(hostile, "run_id")
    assert "/" not in segment and "\\" not in segment and segment.strip(".")
    assert (tmp_path / segment).resolve().parent == tmp_path.resolve()


def test_dot_dot_run_ids_do_not_share_a_folder_with_other_dags() -> None:
    keys = {run_key(dag_id=dag, run_id="..", task_id="train") for dag in ("a", "b")}
    assert len(keys) == 2
    assert all(key.count("/") == 2 and ".." not in key.split("/") for key in keys)


def test_encoding_is_deterministic_keeps_plain_names_and_never_collides() -> None:
    assert safe_segment("train_model-1.v2", "task_id") == "train_model-1.v2"
    run_id = "manual__2024-01-01T00:00:00+00:00"
    assert safe_segment(run_id, "run_id") == safe_segment(run_id, "run_id")
    lookalikes = [run_id, "manual__2024-01-01T00_00_00_00_00", "manual__2024-01-01T00/00/00+00:00"]
    assert len({safe_segment(r, "run_id") for r in lookalikes}) == 3
    assert len(safe_segment("x" * 250, "run_id")) < 120


def test_an_empty_segment_is_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match="task_id='' is empty"):
        run_key(dag_id="d", run_id="r", task_id="")


def test_a_hostile_latest_pointer_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_checkpoint(other, {"format": 2}, step=7)
    mine = tmp_path / "mine"
    save_checkpoint(mine, {"format": 2}, step=1)
    for hostile in ("../other/checkpoint-0000000007.pt", "../other", str(other / "checkpoint-0000000007.pt")):
        (mine / LATEST).write_text(hostile + "\n", encoding="utf-8")
        with pytest.raises(UnsafePathError, match="must hold a checkpoint file name of this folder"):
            find_checkpoint(mine)


def test_a_latest_naming_a_symlink_out_of_the_folder_is_an_error(tmp_path: Path) -> None:
    other = save_checkpoint(tmp_path / "other", {"format": 2}, step=7)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "checkpoint-0000000009.pt").symlink_to(other)
    (mine / LATEST).write_text("checkpoint-0000000009.pt\n", encoding="utf-8")
    with pytest.raises(UnsafePathError, match="resolves outside the checkpoint store"):
        find_checkpoint(mine)


def test_an_honest_latest_still_wins(tmp_path: Path) -> None:
    first = save_checkpoint(tmp_path, {"format": 2}, step=1)
    save_checkpoint(tmp_path, {"format": 2}, step=2)
    (tmp_path / LATEST).write_text(first.name, encoding="utf-8")
    assert find_checkpoint(tmp_path) == first


@pytest.mark.parametrize(
    ("path", "root"),
    [
        ("/store/../elsewhere/c.pt", "/store"),
        ("/storex/c.pt", "/store"),
        ("s3://conn@bucket/prefix/../other/c.pt", "s3://conn@bucket/prefix"),
        ("s3://conn@bucket/prefixed/c.pt", "s3://conn@bucket/prefix"),
        ("s3://conn@other-bucket/prefix/c.pt", "s3://conn@bucket/prefix"),
        ("gs://conn@bucket/prefix/c.pt", "s3://conn@bucket/prefix"),
        ("/store/c.pt", "s3://conn@bucket/store"),
    ],
)
def test_a_resume_path_outside_the_store_is_refused(path: str, root: str) -> None:
    with pytest.raises(UnsafePathError, match="checkpoint store"):
        confine(path, root, "resume checkpoint")


def test_a_resume_path_inside_the_store_is_normalised(tmp_path: Path) -> None:
    assert confine("s3://c@b/p/x/../c.pt", "s3://c@b/p/", "resume") == "s3://c@b/p/c.pt"
    assert confine(tmp_path / "a" / ".." / "c.pt", tmp_path, "resume") == str(tmp_path.resolve() / "c.pt")


@pytest.mark.parametrize(
    ("location", "why"), [("", "is empty"), ("  ", "is empty"), ("ck\0pt", "NUL"), ("s3://b/p\0x", "NUL")]
)
def test_an_unusable_checkpoint_dir_is_refused_by_name(location: str, why: str) -> None:
    with pytest.raises(
        InvalidInputError, match=rf"checkpoint_dir={re.escape(repr(location))} .*{why}"
    ) as info:
        CheckpointStore(location, "dag/run/train")
    assert "object-storage URL" in str(info.value) and not isinstance(info.value, UnsafePathError)
