"""The embedded default inbox: a local folder laid out like the partner SFTP server."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from bdt_platform.inbox.base import DONE_SUFFIX, PROCESSED, Inbox, InboxFile, InboxUnavailable


class FolderInbox(dg.ConfigurableResource, Inbox):
    """Partner drops in ``<root>/<partner>/<file>`` on the local disk (``$BDT_HOME/inbox``)."""

    root: str

    def describe(self) -> str:
        return f"folder {self.root}"

    def list_files(self) -> list[InboxFile]:
        root = Path(self.root)
        if not root.exists():
            return []
        if not root.is_dir():
            raise InboxUnavailable(f"inbox {root} is not a folder")
        files: list[InboxFile] = []
        for folder in sorted(os.scandir(root), key=lambda e: e.name):
            if not folder.is_dir() or folder.name.startswith(".") or folder.name == PROCESSED:
                continue
            entries = {e.name: e for e in os.scandir(folder.path) if e.is_file()}
            for name, entry in sorted(entries.items()):
                if name.startswith(".") or name.endswith(DONE_SUFFIX):
                    continue
                stat = entry.stat()
                files.append(InboxFile(folder.name, name, stat.st_size, stat.st_mtime,
                                       has_done_marker=name + DONE_SUFFIX in entries))
        return files

    def read_bytes(self, path: str) -> bytes:
        return (Path(self.root) / path).read_bytes()

    def mark_processed(self, path: str) -> None:
        source = Path(self.root) / path
        target = Path(self.root) / PROCESSED / path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        marker = source.with_name(source.name + DONE_SUFFIX)
        if marker.exists():
            marker.unlink()
