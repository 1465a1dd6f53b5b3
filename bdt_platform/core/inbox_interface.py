"""The inbox interface every backend implements (a local folder, an SFTP server)."""

from __future__ import annotations

from dataclasses import dataclass

PROCESSED = "processed"  # files we have landed move to <inbox>/processed/<partner>/<file>
DONE_SUFFIX = ".done"


class InboxUnavailable(RuntimeError):
    """The inbox cannot be reached (server down, auth refused, unknown host key): one-line reason."""


class InboxWriteRefused(InboxUnavailable):
    """The inbox refused a file we put into it (no permission, disk full, read-only server):
    one-line reason naming the file and the inbox."""


def drop_path_parts(path: str) -> tuple[str, str]:
    """``<partner folder>/<file>`` -> (folder, file); ``ValueError`` saying why for anything
    else (absolute, ``..``, nested, hidden, a ``.done`` marker or the ``processed`` folder):
    what :meth:`Inbox.put` may write is exactly what :meth:`Inbox.list_files` would list."""
    parts = path.split("/")
    problem = None
    if len(parts) != 2 or not all(parts):
        problem = "expected <partner folder>/<file>"
    elif any(p in (".", "..") or p.startswith(".") for p in parts):
        problem = "hidden names and .. are not allowed"
    elif parts[0] == PROCESSED:
        problem = f"{PROCESSED}/ holds files already landed"
    elif parts[1].endswith(DONE_SUFFIX):
        problem = f"{DONE_SUFFIX} markers are not partner files"
    if problem:
        raise ValueError(f"not a partner drop path in the inbox: {path!r} ({problem})")
    return parts[0], parts[1]


@dataclass(frozen=True)
class InboxFile:
    """One file in a partner's inbox folder, as listed (no content read)."""

    folder: str  # the partner folder it was dropped in
    name: str
    size: int
    mtime: float  # seconds since the epoch, as the server reports it
    has_done_marker: bool = False

    @property
    def path(self) -> str:
        """Path relative to the inbox root: ``<partner>/<file>``."""
        return f"{self.folder}/{self.name}"

    @property
    def identity(self) -> str:
        """What makes a delivery unique: path, size and modification time."""
        return f"{self.path}:{self.size}:{int(self.mtime)}"


class Inbox:
    """Listing, reading and retiring partner drops. Implementations are Dagster resources."""

    def describe(self) -> str:
        raise NotImplementedError

    def list_files(self) -> list[InboxFile]:
        """Every candidate drop under ``<root>/<partner>/`` (not markers, not processed)."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        raise NotImplementedError

    def mark_processed(self, path: str) -> None:
        """Move a landed file to ``processed/<partner>/`` and remove its ``.done`` marker."""
        raise NotImplementedError

    def put(self, path: str, data: bytes, mtime: float) -> None:
        """Place ``data`` at ``<root>/<path>`` (``<partner folder>/<file>``, folder created) as
        a complete file whose modification time is ``mtime`` (epoch seconds): it is written
        under a hidden temporary name in the same folder (never listed), given ``mtime``, and
        renamed into place, so a look at the inbox sees either nothing or the whole file with
        its arrival time. ``bdt quarantine release`` puts a quarantined file back this way.
        A file already at ``path`` is replaced. Raises :class:`InboxWriteRefused` (one line)
        when the inbox refuses the write, ``ValueError`` for a path that is no partner drop."""
        raise NotImplementedError

    def remove(self, path: str) -> None:
        """Delete ``<root>/<path>`` (only a file the platform itself put there, e.g. a released
        file whose run failed: the quarantine still holds it). A missing file is not an error;
        :class:`InboxWriteRefused` when the inbox refuses."""
        raise NotImplementedError
