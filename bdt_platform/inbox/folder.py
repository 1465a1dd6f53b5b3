"""The embedded default inbox: a local folder laid out like the partner SFTP server."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dagster as dg

from bdt_platform.core.inbox_interface import (DONE_SUFFIX, PROCESSED, Inbox, InboxFile, InboxUnavailable,
                                     InboxWriteRefused, drop_path_parts)


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

    def put(self, path: str, data: bytes, mtime: float) -> None:
        folder, name = drop_path_parts(path)
        target = Path(self.root) / folder / name
        temporary = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Hidden (a leading dot), so a listing meanwhile skips it; same folder, so the
            # rename is atomic. The arrival time is set before the rename, which keeps it.
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.",
                                                 suffix=".part")
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.utime(temporary, (mtime, mtime))
            os.replace(temporary, target)
            temporary = None
        except OSError as exc:
            raise InboxWriteRefused(f"could not put {path} into the inbox {self.root}: "
                                    f"{exc.strerror or exc}") from exc
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)

    def remove(self, path: str) -> None:
        folder, name = drop_path_parts(path)
        try:
            (Path(self.root) / folder / name).unlink(missing_ok=True)
        except OSError as exc:
            raise InboxWriteRefused(f"could not remove {path} from the inbox {self.root}: "
                                    f"{exc.strerror or exc}") from exc
