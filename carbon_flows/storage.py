"""The Prefect training's checkpoint store: `carbon_sensors.checkpoint_store` with fsspec's object storage.

Object-storage locations are anything fsspec opens (`s3://bucket/prefix` through s3fs, `gs://...`,
`file://...`); s3fs takes its credentials and endpoint from the usual AWS environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`) or an fsspec configuration.
"""

from __future__ import annotations

from typing import Any

import fsspec

from carbon_sensors import checkpoint_store


class CheckpointStore(checkpoint_store.CheckpointStore):
    """Checkpoints of one training (a flow run and the runs it rescheduled) under `<checkpoint_dir>/<flow>/<id>`."""

    def filesystem(self) -> tuple[Any, str]:
        fs, root = fsspec.core.url_to_fs(self.location)
        return fs, str(root)
