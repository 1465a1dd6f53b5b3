"""The outbox interface, and the embedded default: a local folder per partner.

Publishing is atomic from the reader's side: bytes go to a hidden temporary name
(``.<file>.part``) in the partner's folder and are renamed to the final name only when complete
and verified, so a vendor polling the folder sees either nothing or the whole file.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

TEMP_PREFIX = "."
TEMP_SUFFIX = ".part"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class OutboxUnavailable(RuntimeError):
    """The outbox cannot be reached or trusted (server down, auth refused, unknown host key)."""


@dataclass(frozen=True)
class OutboxReceipt:
    """A published file: where it now is, its size and sha256 (as verified after the upload)."""

    location: str  # the file's full location: a local path or sftp://user@host:port/path
    partner: str
    filename: str
    size: int
    sha256: str

    def as_metadata(self) -> dict:
        return {
            "outbox_file": self.filename,
            "outbox_location": self.location,
            "outbox_partner": self.partner,
            "outbox_sha256": self.sha256,
            "outbox_size_bytes": self.size,
        }


def temp_name(filename: str) -> str:
    """The hidden name a file has while it is being written."""
    return f"{TEMP_PREFIX}{filename}{TEMP_SUFFIX}"


def check_names(partner: str, filename: str) -> None:
    for label, value in (("partner", partner), ("file name", filename)):
        if not _SAFE_NAME.match(value):
            raise ValueError(f"unsafe outbox {label}: {value!r}")


class Outbox:
    """Publishing files for a partner to pick up. Implementations are Dagster resources."""

    def describe(self) -> str:
        raise NotImplementedError

    def publish(self, partner: str, filename: str, data: bytes) -> OutboxReceipt:
        """Write ``data`` as ``<partner>/<filename>``, replacing an earlier file of that name,
        atomically (temporary name, then rename) and verified by size."""
        raise NotImplementedError

    def list_files(self, partner: str) -> list[str]:
        """Published file names in a partner's folder (temporary files excluded)."""
        raise NotImplementedError

    def read_bytes(self, partner: str, filename: str) -> bytes:
        raise NotImplementedError


class FolderOutbox(dg.ConfigurableResource, Outbox):
    """Files for partners in ``<root>/<partner>/`` on the local disk (``$BDT_HOME/outbox``)."""

    root: str

    def describe(self) -> str:
        return f"folder {self.root}"

    def publish(self, partner: str, filename: str, data: bytes) -> OutboxReceipt:
        check_names(partner, filename)
        folder = Path(self.root) / partner
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / temp_name(filename)
        target = folder / filename
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if temporary.stat().st_size != len(data):
                raise OSError(f"short write of {temporary}")
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return OutboxReceipt(str(target), partner, filename, len(data),
                             hashlib.sha256(data).hexdigest())

    def list_files(self, partner: str) -> list[str]:
        folder = Path(self.root) / partner
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir()
                      if p.is_file() and not p.name.startswith(TEMP_PREFIX))

    def read_bytes(self, partner: str, filename: str) -> bytes:
        check_names(partner, filename)
        return (Path(self.root) / partner / filename).read_bytes()
