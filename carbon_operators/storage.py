"""Where a training task keeps its checkpoints: a local folder, or object storage staged through one.

The runner writes checkpoints atomically to a local folder. With an object-storage location (`s3://...`,
`gs://...`, `file://...`: anything `ObjectStoragePath` opens, with `conn_id@` in the URL as Airflow allows)
each checkpoint is copied there after the run pauses or ends, and fetched back before a resume; only its
path travels in XCom and deferral kwargs, and a path coming back must lie inside the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from airflow.sdk import ObjectStoragePath

from carbon_sensors.paths import confine, is_object_storage


class CheckpointStore:
    """Checkpoint folder of one task attempt chain; `publish` a local file, `fetch` a published one."""

    def __init__(self, location: str | None, run_key: str) -> None:
        """`location=None`: a per-run folder under the system temp dir (lost on a new machine).

        `run_key` is a relative key of safe segments (`carbon_sensors.paths.run_key`); one that would
        leave the scratch folder is refused.
        """
        scratch = Path(tempfile.gettempdir()) / "carbon-aware-checkpoints"
        confine(scratch / run_key, scratch, "checkpoint run key")
        self.location = location or str(scratch / run_key)
        self.remote = is_object_storage(self.location)
        self.local_dir = scratch / "staging" / run_key if self.remote else Path(self.location)

    def publish(self, local_file: str) -> str:
        """The path to hand on (XCom, deferral kwargs) for checkpoint `local_file`."""
        if not self.remote:
            return local_file
        target = ObjectStoragePath(self.location) / Path(local_file).name
        target.parent.mkdir(parents=True, exist_ok=True)
        ObjectStoragePath(Path(local_file).resolve().as_uri()).copy(target)
        return str(target)

    def fetch(self, published: str) -> Path:
        """A local file holding checkpoint `published` (downloaded into the staging folder when remote).

        `published` came back through XCom or deferral kwargs, which others can write: it must lie inside
        this store's folder or bucket prefix, else UnsafePathError.
        """
        inside = confine(published, self.location, "resume checkpoint")
        if not self.remote:
            return Path(inside)
        local = self.local_dir / ObjectStoragePath(inside).name
        local.parent.mkdir(parents=True, exist_ok=True)
        ObjectStoragePath(inside).copy(ObjectStoragePath(local.resolve().as_uri()))
        return local
