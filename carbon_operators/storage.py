"""Where a training task keeps its checkpoints: a local folder, or object storage staged through one.

Every DAG run, task and map index gets its own folder, `<checkpoint_dir>/<dag_id>/<run_id>/<task_id>[/<map_index>]`
(segments made safe by `carbon_sensors.paths`), so nightly runs and mapped tasks never share checkpoints.
The runner writes checkpoints and the emissions timeline atomically to a local folder. With an
object-storage location (`s3://conn_id@bucket/prefix`, `gs://...`, `file://...`: anything `ObjectStoragePath`
opens, with its Airflow connection) each checkpoint and the timeline are uploaded as they are written and
pulled back before a resume, on whichever worker that is; only their paths travel in XCom and deferral
kwargs, and a path coming back must lie inside the store.
"""

from __future__ import annotations

import hashlib
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.sdk import ObjectStoragePath

from carbon_sensors.errors import CheckpointError
from carbon_sensors.paths import confine, is_object_storage

if TYPE_CHECKING:  # torch: imported when a task trains, not when a DAG file is parsed
    from carbon_sensors.training.mirror import CheckpointMirror

TIMELINE = "emissions.jsonl"


class CheckpointStore:
    """The checkpoint folder of one task (all its attempts): where to train, what to publish and resume."""

    def __init__(self, location: str | None, run_key: str) -> None:
        """`location=None`: a folder under the system temp dir, private to this worker.

        `run_key` is a relative key of safe segments (`carbon_sensors.paths.run_key`); one that would
        leave the store's folder is refused.
        """
        scratch = Path(tempfile.gettempdir()) / "carbon-aware-checkpoints"
        confine(scratch / run_key, scratch, "checkpoint run key")
        self.remote = location is not None and is_object_storage(location)
        if self.remote:
            assert location is not None
            self.location = str(ObjectStoragePath(location) / run_key)
            # one staging folder per remote folder: two stores never mix their files on a worker
            digest = hashlib.sha256(self.location.encode("utf-8")).hexdigest()[:16]
            self.local_dir = scratch / "staging" / digest
        else:
            root = Path(location) if location is not None else scratch
            self.location = str(root / run_key)
            self.local_dir = Path(self.location)
        confine(self.location, location or scratch, "checkpoint run key")
        self._mirror: CheckpointMirror | None = None

    @property
    def mirror(self) -> CheckpointMirror:
        from carbon_sensors.training.mirror import CheckpointMirror

        if self._mirror is None:
            remote = ObjectStoragePath(self.location)
            self._mirror = CheckpointMirror(remote.fs, remote.path, self.location, self.local_dir)
        return self._mirror

    def on_checkpoint(self, checkpoint: Path, timeline: Path) -> None:
        """The runner's hook: publish each checkpoint (and the timeline) as it is written."""
        if self.remote:
            self.mirror.publish(checkpoint, timeline)

    def published(self, local_file: str | Path) -> str:
        """The path to hand on (XCom, deferral kwargs) for the staged file `local_file`."""
        return self.mirror.url_of(Path(local_file).name) if self.remote else str(local_file)

    def resume_point(self, published: str | None) -> str | Path:
        """What the runner resumes from: the checkpoint `published` (after a pause), else "latest".

        Remote: the checkpoint(s) and timeline are pulled into the staging folder first. Local: a pause's
        checkpoint missing here means the task moved to a worker that cannot see the folder.
        `published` came back through deferral kwargs, which others can write: it must lie inside this
        store's folder or bucket prefix, else UnsafePathError.
        """
        if published is None:
            if self.remote:
                self.mirror.pull()
            return "latest"
        inside = confine(published, self.location, "resume checkpoint")
        if self.remote:
            pulled = self.mirror.pull(ObjectStoragePath(inside).name)
            assert pulled is not None
            return pulled
        if not Path(inside).is_file():
            raise CheckpointError(
                f"checkpoint {inside} is not on this worker ({socket.gethostname()}): checkpoint_dir="
                f"{self.location!r} is a local folder, which only the worker that wrote it can read. Use "
                "shared storage mounted on every worker, or object storage (checkpoint_dir='s3://conn_id@bucket/prefix')"
            )
        return Path(inside)

    def timeline(self) -> str:
        """Where the emissions timeline is published (next to the checkpoints)."""
        return self.mirror.url_of(TIMELINE) if self.remote else str(self.local_dir / TIMELINE)
