"""The lake's archive of partner files: each file's name there, and writing it.

Without Dagster, so that worker processes can write the archive copies of the files they read
(``store_many``; ``feeds.file_assets`` has them do it) as well as the run's process
(``LakeResource.archive``). Layout: see ``storage.lake``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import uuid
from dataclasses import dataclass

from upath import UPath

#: An archived file's name starts with its arrival time, to the second, in UTC (so a partition's
#: files sort by arrival): ``<arrival>_<sha256[:12]>_<file name>``.
ARRIVAL_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class ArchivedFile:
    """A partner file as the lake holds it: where, its checksum, size and arrival time."""

    path: str  # relative to the lake root
    filename: str
    sha256: str
    size: int
    received_at: dt.datetime

    def as_metadata(self) -> dict:
        return {
            "source_file": self.filename,
            "source_sha256": self.sha256,
            "source_size_bytes": self.size,
            "source_received_at": self.received_at.isoformat(),
            "source_archive_path": self.path,
        }


def archived_file(feed: str, state: str, month: dt.date, filename: str, data: bytes,
                  received_at: dt.datetime) -> ArchivedFile:
    """Where ``data`` goes in the archive (named by arrival, to the second, and checksum), and
    what the lake will hold: nothing is written."""
    digest = hashlib.sha256(data).hexdigest()
    received_at = received_at.astimezone(dt.timezone.utc).replace(microsecond=0)
    name = f"{received_at.strftime(ARRIVAL_FORMAT)}_{digest[:12]}_{filename}"
    return ArchivedFile(f"archive/{feed}/month={month:%Y-%m}/state={state}/{name}", filename,
                        digest, len(data), received_at)


READ_BACK_BYTES = 1 << 20


def store(root: UPath, archived: ArchivedFile, data: bytes) -> None:
    """Write ``data`` at ``archived.path`` under ``root`` unless it is there already (the same
    file archived again), then read it back: OSError unless the lake holds its checksum.

    Never leaves a part of a file under the archive's name: in a local lake the bytes go to a
    hidden ``.<name>.<random>.part`` beside it, renamed into place when whole (a GCS object
    appears only when whole); a write that fails (a full disk) removes what it wrote and raises
    OSError naming the lake path and the reason ("No space left on device")."""
    target = root.joinpath(archived.path)
    if not (target.exists() and target.stat().st_size == len(data)):
        local = target.protocol in ("", "file", "local")
        written = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part") if local \
            else target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            written.write_bytes(data)
            if local:
                os.replace(written.path, target.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                written.unlink()
            raise OSError(exc.errno, f"{exc.strerror or exc}: could not write the lake copy "
                                     f"{target} ({len(data)} bytes)") from exc
    digest = hashlib.sha256()
    with target.open("rb") as stored:  # read back a piece at a time: no second copy in memory
        while piece := stored.read(READ_BACK_BYTES):
            digest.update(piece)
    if digest.hexdigest() != archived.sha256:
        raise OSError(f"lake copy of {archived.filename} does not match its checksum "
                      f"({archived.path})")


def store_many(root: str, storage_options: dict[str, str],
               files: list[tuple[ArchivedFile, bytes]]) -> None:
    """``store`` each ``(archived file, bytes)`` under the lake root ``root`` (a folder or
    ``gs://bucket/prefix``, with its fsspec options): what a worker process runs."""
    base = UPath(root, **storage_options)
    for archived, data in files:
        store(base, archived, data)
