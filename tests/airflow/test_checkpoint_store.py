"""The training operator's checkpoint store: run keys from hostile run ids, resume paths from outside."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from carbon_operators.storage import CheckpointStore
from carbon_operators.training import _run_key
from carbon_sensors.errors import UnsafePathError


def context(dag_id: str, run_id: str) -> Any:
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id)}


def test_a_dot_dot_run_id_keeps_each_dag_in_its_own_default_folder() -> None:
    stores = [CheckpointStore(None, _run_key(context(dag, ".."), "train")) for dag in ("etl", "report")]
    folders = [Path(s.location).resolve() for s in stores]
    assert folders[0] != folders[1]
    assert all(f.name == "train" and f.parent.parent.name in {"etl", "report"} for f in folders)


def test_a_run_key_that_climbs_out_is_refused() -> None:
    with pytest.raises(UnsafePathError, match="outside the checkpoint store"):
        CheckpointStore(None, "../../elsewhere")


def test_a_local_resume_path_outside_the_store_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "store"), "unused")
    stolen = tmp_path / "other-dag" / "checkpoint-0000000001.pt"
    with pytest.raises(UnsafePathError, match=r"resume checkpoint .* outside the checkpoint store"):
        store.resume_point(str(stolen))
    with pytest.raises(UnsafePathError):
        store.resume_point(str(tmp_path / "store" / ".." / "other-dag" / stolen.name))
    inside = Path(store.location) / "checkpoint-0000000001.pt"  # the run's own folder in the store
    inside.parent.mkdir(parents=True)
    inside.write_bytes(b"x")
    assert store.resume_point(str(inside)) == inside.resolve()


def test_a_remote_resume_path_outside_the_prefix_is_refused_before_any_copy(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    (bucket / "other").mkdir(parents=True)
    (bucket / "other" / "checkpoint-0000000001.pt").write_bytes(b"x")
    store = CheckpointStore((bucket / "mine").as_uri(), "dag/run/train")
    with pytest.raises(UnsafePathError, match="outside the checkpoint store"):
        store.resume_point((bucket / "mine").as_uri() + "/../other/checkpoint-0000000001.pt")
    assert not store.local_dir.exists()
