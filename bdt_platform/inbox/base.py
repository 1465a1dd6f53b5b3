"""The inbox interface every backend implements (a local folder, an SFTP server)."""

from __future__ import annotations

from dataclasses import dataclass

PROCESSED = "processed"  # files we have landed move to <inbox>/processed/<partner>/<file>
DONE_SUFFIX = ".done"


class InboxUnavailable(RuntimeError):
    """The inbox cannot be reached (server down, auth refused, unknown host key): one-line reason."""


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
