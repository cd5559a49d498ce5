"""A run's checkpoints and emissions timeline mirrored to object storage, through any fsspec filesystem.

The runner writes to a local folder (atomic renames need one). `publish` copies each checkpoint there as
it is written, then the timeline, then prunes all but the newest published checkpoints. `pull` brings
them back into the local folder before a resume, on whichever worker that is (dropping staged checkpoints
that were never published), and merges the published timeline into any local one: a retry on the same
worker keeps the energy it flushed after the last publish, one on another worker all that was published. Airflow hands in the filesystem of an
`ObjectStoragePath` (its connections), Prefect that of `fsspec.url_to_fs` (s3fs and its environment).
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path
from typing import Any

from carbon_sensors.emissions import merge_timeline
from carbon_sensors.training.checkpoint import checkpoint_step, list_checkpoints
from carbon_sensors.training.session import TIMELINE_NAME


class CheckpointMirror:
    """Checkpoints of one run at `root` on `fs` (shown to users as `url`), staged in `local_dir`."""

    def __init__(self, fs: Any, root: str, url: str, local_dir: Path, *, keep_last: int = 2) -> None:
        self.fs, self.root, self.url = fs, root.rstrip("/"), url.rstrip("/")
        self.local_dir, self.keep_last = local_dir, keep_last

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def publish(self, checkpoint: Path, timeline: Path) -> None:
        """Upload `checkpoint`, then `timeline` (which holds at least the checkpoint's energy), then prune."""
        self.fs.makedirs(self.root, exist_ok=True)
        self.fs.put_file(str(checkpoint), f"{self.root}/{checkpoint.name}")
        if timeline.is_file():
            self.fs.put_file(str(timeline), f"{self.root}/{TIMELINE_NAME}")
        for old in self.published()[: -self.keep_last]:
            self.fs.rm_file(f"{self.root}/{old}")

    def pull(self, only: str | None = None) -> Path | None:
        """The newest published checkpoints (or just `only`) and the timeline, into `local_dir`.

        Returns the local file of `only`, else None. A checkpoint already staged is not downloaded again.
        """
        self.local_dir.mkdir(parents=True, exist_ok=True)
        published = self.published()
        for stale in (p for p in list_checkpoints(self.local_dir) if p.name not in published):
            stale.unlink()  # staged by an attempt whose upload never happened: the store is the truth
        names = [only] if only is not None else published[-self.keep_last :]
        for name in names:
            if not (self.local_dir / name).is_file():
                self._download(name, self.local_dir / name)
        published_timeline = f"{self.root}/{TIMELINE_NAME}"
        if self.fs.exists(published_timeline):
            with tempfile.TemporaryDirectory(dir=self.local_dir) as scratch:
                copy = Path(scratch) / TIMELINE_NAME
                self.fs.get_file(published_timeline, str(copy))
                merge_timeline(self.local_dir / TIMELINE_NAME, copy)
        return None if only is None else self.local_dir / only

    def published(self) -> list[str]:
        """Names of the published checkpoints, oldest step first."""
        self.fs.invalidate_cache(self.root)
        if not self.fs.exists(self.root):
            return []
        names = [posixpath.basename(str(p).rstrip("/")) for p in self.fs.ls(self.root, detail=False)]
        steps = {n: step for n in names if (step := checkpoint_step(n)) is not None}
        return sorted(steps, key=steps.__getitem__)

    def _download(self, name: str, local: Path) -> None:
        """Download to a temp name and rename, so an interrupted download is never taken for a checkpoint."""
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=local.parent)
        os.close(fd)
        try:
            self.fs.get_file(f"{self.root}/{name}", tmp)
            os.replace(tmp, local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
