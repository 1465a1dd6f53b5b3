"""The lake: original partner files archived byte for byte, and quarantined files with reasons.

One implementation for every backend: paths are ``UPath``s, so a local folder and ``gs://`` differ
only in the root. Archive layout (readable, and sorted by arrival within a partition)::

    archive/<feed>/month=YYYY-MM/state=XX/<arrival:%Y%m%dT%H%M%SZ>_<sha256[:12]>_<file name>
    quarantine/<partner>/<file name>            (+ <file name>.reason.json)
    quarantine/<partner>/<stem>.<sha256[:12]>.<ext>   (a different file of the same name, later)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import dagster as dg
from upath import UPath

from bdt_platform.storage.archive import ARRIVAL_FORMAT, ArchivedFile, archived_file, store


class LakeResource(dg.ConfigurableResource):
    """The lake root: a local folder (embedded default) or ``gs://bucket/prefix`` (prod)."""

    root: str
    # fsspec options for the root's filesystem, e.g. gcsfs's ``endpoint_url`` and ``token`` when
    # prod runs against a storage emulator (resources.py sets them; empty means the defaults:
    # application-default credentials on GCS).
    storage_options: dict[str, str] = {}

    def path(self, *parts: str) -> UPath:
        return UPath(self.root, **self.storage_options).joinpath(*parts)

    def archive(self, feed: str, state: str, month: dt.date, filename: str, data: bytes,
                received_at: dt.datetime) -> ArchivedFile:
        """Store ``data`` verbatim; idempotent for the same file; verified by reading back."""
        archived = archived_file(feed, state, month, filename, data, received_at)
        store(self.path(), archived, data)
        return archived

    def archived_files(self, feed: str, state: str, month: dt.date) -> list[str]:
        """Relative paths of every archived file of a partition, oldest arrival first."""
        folder = self.path(f"archive/{feed}/month={month:%Y-%m}/state={state}")
        if not folder.exists():
            return []
        return sorted(f"archive/{feed}/month={month:%Y-%m}/state={state}/{p.name}"
                      for p in folder.iterdir()
                      if not p.name.startswith("."))  # a copy being written (archive.store)

    def read_archived(self, relative: str) -> tuple[ArchivedFile, bytes]:
        data = self.path(relative).read_bytes()
        name = relative.rsplit("/", 1)[-1]
        stamp, _, filename = name.split("_", 2)
        received = dt.datetime.strptime(stamp, ARRIVAL_FORMAT).replace(tzinfo=dt.timezone.utc)
        archived = ArchivedFile(relative, filename, hashlib.sha256(data).hexdigest(), len(data),
                                received)
        return archived, data

    def quarantine(self, partner: str, filename: str, data: bytes, reason: dict) -> str:
        """Keep a rejected file byte for byte with ``<file>.reason.json`` beside it.

        A partner may send a file of the same name again (a corrected file that is still
        wrong): a different file never replaces an earlier one. It is kept beside it as
        ``<name>.<sha256[:12]><extensions>``; the same bytes again are the same quarantined file."""
        partner = partner or "_unknown"
        folder = self.path("quarantine", partner)
        folder.mkdir(parents=True, exist_ok=True)
        name = filename
        if folder.joinpath(name).exists() and folder.joinpath(name).read_bytes() != data:
            stem, dot, extensions = filename.partition(".")
            name = f"{stem}.{hashlib.sha256(data).hexdigest()[:12]}{dot}{extensions}"
        folder.joinpath(name).write_bytes(data)
        folder.joinpath(name + ".reason.json").write_text(
            json.dumps(reason, indent=2, default=str, ensure_ascii=False)
        )
        return f"quarantine/{partner}/{name}"
