"""Where a training keeps its checkpoints: a local folder, or object storage staged through one.

Every training gets its own folder under the location the user gives (`<location>/<run key>`: Airflow's
`<dag_id>/<run_id>/<task_id>[/<map_index>]`, Prefect's `<flow>/<training id>`, segments made safe by
`carbon_sensors.paths`), so nightly runs and mapped tasks never share checkpoints. The runner writes
checkpoints and the emissions timeline atomically to a local folder. With an object-storage location each
checkpoint and the timeline are uploaded as they are written (`on_checkpoint`) and pulled back before an
attempt (`resume_point`), on whichever worker that is; only their URLs travel in XCom, deferral kwargs and
flow parameters, and a path coming back must lie inside the store. Subclasses say how a URL becomes an
fsspec filesystem (Airflow: `ObjectStoragePath` and its connections; Prefect: `fsspec.url_to_fs`).
This module imports neither torch nor an orchestrator.
"""

from __future__ import annotations

import hashlib
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carbon_sensors.errors import CheckpointError, InvalidInputError
from carbon_sensors.paths import confine, is_object_storage

if TYPE_CHECKING:  # torch: imported when a task trains, not when a DAG or flow file is loaded
    from carbon_sensors.training.mirror import CheckpointMirror

TIMELINE = "emissions.jsonl"
LATEST = "latest"


def _check_location(location: str | None) -> None:
    """Refuse a `checkpoint_dir` no folder can have, by name, before it becomes a confusing path error.

    "" (or blanks) would mean the worker's current folder, and a NUL byte makes every OS call fail.
    """
    if location is None:
        return
    why = "holds a NUL byte" if "\0" in location else "is empty" if not location.strip() else ""
    if why:
        raise InvalidInputError(
            f"checkpoint_dir={location!r} {why}; give a local folder (e.g. '/data/checkpoints'), an "
            "object-storage URL (e.g. 's3://bucket/prefix'), or None for a folder under the system temp dir"
        )


class CheckpointStore:
    """The checkpoint folder of one training (all its attempts): where to train, publish and resume from."""

    def __init__(self, location: str | None, run_key: str) -> None:
        """`location=None`: a folder under the system temp dir, private to this machine.

        `run_key` is a relative key of safe segments (`carbon_sensors.paths.run_key`), or "" for the
        location itself; one that would leave the store's folder is refused.
        """
        _check_location(location)
        scratch = Path(tempfile.gettempdir()) / "carbon-aware-checkpoints"
        confine(scratch / run_key, scratch, "checkpoint run key")
        self.remote = location is not None and is_object_storage(location)
        if location is not None and self.remote:
            self.location = self.join(location, run_key)
            # one staging folder per remote folder: two stores never mix their files on a worker
            digest = hashlib.sha256(self.location.encode("utf-8")).hexdigest()[:16]
            self.local_dir = scratch / "staging" / digest
        else:
            self.location = str(Path(location if location is not None else scratch) / run_key)
            self.local_dir = Path(self.location)
        confine(self.location, location or scratch, "checkpoint run key")
        self._mirror: CheckpointMirror | None = None

    # --- what a subclass provides for object storage -------------------------------------------------------
    def join(self, location: str, key: str) -> str:
        """The URL of `key` under the object-storage URL `location` (an empty key: `location` itself)."""
        return f"{location.rstrip('/')}/{key}" if key else location.rstrip("/")

    def filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem of `self.location` and the location as a path on it."""
        raise NotImplementedError(f"{type(self).__name__} cannot open object storage")

    # --- the runner's side ---------------------------------------------------------------------------------
    @property
    def mirror(self) -> CheckpointMirror:
        from carbon_sensors.training.mirror import CheckpointMirror  # torch: only where a task trains

        if self._mirror is None:
            fs, root = self.filesystem()
            self._mirror = CheckpointMirror(fs, root, self.location, self.local_dir)
        return self._mirror

    def _newer_than(self, name: str) -> bool:
        """Whether the store holds a checkpoint of a later step than the one named `name`."""
        from carbon_sensors.training.checkpoint import checkpoint_step, list_checkpoints  # torch

        step = checkpoint_step(name)
        names = self.mirror.published() if self.remote else [p.name for p in list_checkpoints(self.local_dir)]
        steps = [s for s in map(checkpoint_step, names) if s is not None]
        return step is not None and bool(steps) and max(steps) > step

    def on_checkpoint(self, checkpoint: Path, timeline: Path) -> None:
        """The runner's hook: publish each checkpoint (and the timeline) as it is written."""
        if self.remote:
            self.mirror.publish(checkpoint, timeline)

    def published(self, local_file: str | Path) -> str:
        """The path to hand on (XCom, deferral kwargs, flow parameters) for the staged file `local_file`."""
        return self.mirror.url_of(Path(local_file).name) if self.remote else str(local_file)

    def timeline(self) -> str:
        """Where the emissions timeline is published (next to the checkpoints)."""
        return self.mirror.url_of(TIMELINE) if self.remote else str(self.local_dir / TIMELINE)

    def resume_point(self, published: str | None) -> str | Path:
        """What the runner resumes from: the checkpoint `published` (after a pause), else "latest".

        A checkpoint newer than `published` in the store wins: a rescheduled run that trained on from the
        pause's checkpoint and then crashed is rerun with the same parameters, and must resume from where it
        got to (the pause's checkpoint may be pruned by then). Remote: the checkpoint(s) and timeline are
        pulled into the staging folder first. Local: a pause's checkpoint missing here means the training
        moved to a machine that cannot see the folder. `published` came back from outside (deferral kwargs,
        flow parameters), which others can write: it must lie inside this store's folder or bucket prefix,
        else UnsafePathError.
        """
        inside = None if published is None else confine(published, self.location, "resume checkpoint")
        name = None if inside is None else inside.rstrip("/").rsplit("/", 1)[-1]
        if name is None or self._newer_than(name):
            if self.remote:
                self.mirror.pull()
            return LATEST
        assert inside is not None
        if self.remote:
            pulled = self.mirror.pull(name)
            assert pulled is not None
            return pulled
        if not Path(inside).is_file():
            raise CheckpointError(
                f"checkpoint {inside} is not on this machine ({socket.gethostname()}): checkpoint_dir="
                f"{self.location!r} is a local folder, which only the worker that wrote it can read. Use "
                "shared storage mounted on every worker, or object storage (checkpoint_dir='s3://bucket/prefix')"
            )
        return Path(inside)
