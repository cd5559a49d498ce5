"""The training operator's checkpoint store: `carbon_sensors.checkpoint_store` with Airflow's object storage.

Object-storage locations are anything `ObjectStoragePath` opens (`s3://conn_id@bucket/prefix`, `gs://...`,
`file://...`), with the credentials and endpoint of the Airflow connection named in the URL.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import ObjectStoragePath

from carbon_sensors import checkpoint_store


class CheckpointStore(checkpoint_store.CheckpointStore):
    """Checkpoints of one task instance under `<checkpoint_dir>/<dag_id>/<run_id>/<task_id>[/<map_index>]`."""

    def join(self, location: str, key: str) -> str:
        return str(ObjectStoragePath(location) / key) if key else location.rstrip("/")

    def filesystem(self) -> tuple[Any, str]:
        remote = ObjectStoragePath(self.location)
        return remote.fs, remote.path
