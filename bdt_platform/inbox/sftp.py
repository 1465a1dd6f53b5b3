"""The partner SFTP server as an inbox: the same interface and semantics as the local folder.

``BDT_INBOX=sftp://user@host:port/inbox`` selects it (``core/resources.py``). Partners drop files into
``<root>/<partner>/``; a landed file moves to ``<root>/processed/<partner>/`` (``posix_rename``,
folders created as needed), and its ``<name>.done`` marker, if any, is removed. If the server
refuses writes (a read-only account) the file is left in place with a warning; the sensor's
cursor remembers what it handled, and nothing is ever deleted.

Security: key authentication only (``BDT_SFTP_KEY``), and the server's host key must already be in
``BDT_SFTP_KNOWN_HOSTS``: an unknown or changed host key is refused (paramiko ``RejectPolicy``),
never added. Every failure to reach or trust the server - refused connection, timeout, unknown
host key, rejected key - becomes :class:`InboxUnavailable` with a one-line reason.

The connection code (``core.sftp``: :class:`SftpSession`) is shared with the outbox.
"""

from __future__ import annotations

import io
import posixpath
import stat
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg

from bdt_platform.core.inbox_interface import (DONE_SUFFIX, PROCESSED, Inbox, InboxFile,
                                               InboxUnavailable, InboxWriteRefused,
                                               drop_path_parts)
from bdt_platform.core.sftp import (SftpResource, SftpUrl, _one_line, makedirs, parse_sftp_url,
                                    remote_exists, replace, sibling_folder, upload_atomically)

if TYPE_CHECKING:
    import paramiko

__all__ = ["SftpInbox", "SftpUrl", "parse_sftp_url", "sibling_folder"]


def _safe_relative(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a path inside the inbox: {path!r}")
    return path


# -- the inbox resource ---------------------------------------------------------------------------

class SftpInbox(SftpResource, Inbox):
    """Partner drops in ``<root>/<partner>/<file>`` on an SFTP server (``BDT_INBOX=sftp://...``).

    One connection per resource instance, opened on first use and closed after the run or sensor
    tick that used it. Listing costs one ``listdir_attr`` of the root plus one per partner folder.
    """

    root: str = "/inbox"

    @classmethod
    def from_url(cls, url: str, key_file: str, known_hosts_file: str) -> "SftpInbox":
        parsed = parse_sftp_url(url)
        return cls(host=parsed.host, port=parsed.port, username=parsed.username,
                   root=parsed.path, key_file=key_file, known_hosts_file=known_hosts_file)

    def _path(self, relative: str) -> str:
        return posixpath.join(self.root, _safe_relative(relative))

    def list_files(self) -> list[InboxFile]:
        root = self.root

        def listing(sftp: paramiko.SFTPClient) -> list[InboxFile]:
            try:
                top = sftp.listdir_attr(root)
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise InboxUnavailable(f"inbox {root} on {self.host}:{self.port} cannot be "
                                       f"listed: {_one_line(exc)}") from None
            files: list[InboxFile] = []
            for folder in sorted(top, key=lambda a: a.filename):
                if (not stat.S_ISDIR(folder.st_mode or 0) or folder.filename.startswith(".")
                        or folder.filename == PROCESSED):
                    continue
                try:
                    attrs = list(sftp.listdir_iter(f"{root}/{folder.filename}"))
                except FileNotFoundError:
                    continue  # removed since the first listing
                entries = {a.filename: a for a in attrs if stat.S_ISREG(a.st_mode or 0)}
                for name, entry in sorted(entries.items()):
                    if name.startswith(".") or name.endswith(DONE_SUFFIX):
                        continue
                    files.append(InboxFile(folder.filename, name, int(entry.st_size or 0),
                                           float(entry.st_mtime or 0),
                                           has_done_marker=name + DONE_SUFFIX in entries))
            return files

        return self.session().run(listing)

    def read_bytes(self, path: str) -> bytes:
        remote = self._path(path)

        def read(sftp: paramiko.SFTPClient) -> bytes:
            buffer = io.BytesIO()
            sftp.getfo(remote, buffer)  # prefetching, pipelined reads
            return buffer.getvalue()

        return self.session().run(read)

    def mark_processed(self, path: str) -> None:
        """Move ``<root>/<path>`` to ``<root>/processed/<path>`` and remove its ``.done`` marker.

        A server that refuses the move (read-only account) leaves the file where it is: that is
        logged, not raised - the caller already holds a verified copy in the lake, and the sensor
        remembers the file by its identity.
        """
        source = self._path(path)
        target = posixpath.join(self.root, PROCESSED, _safe_relative(path))

        def move(sftp: paramiko.SFTPClient) -> bool:
            try:
                makedirs(sftp, posixpath.dirname(target))
                try:
                    replace(sftp, source, target)
                except FileNotFoundError:
                    if not remote_exists(sftp, target):
                        raise
                    # Already moved (a repeated call after a lost reply).
            except FileNotFoundError:
                raise
            except OSError as exc:  # PermissionError, or a generic "Failure" from the server
                dg.get_dagster_logger().warning(
                    f"{self.describe()}: the server refused to move {path} to {PROCESSED}/ "
                    f"({_one_line(exc)}); leaving it in place (read-only inbox)")
                return False
            try:
                sftp.remove(source + DONE_SUFFIX)
            except FileNotFoundError:
                pass
            except OSError as exc:
                dg.get_dagster_logger().warning(
                    f"{self.describe()}: could not remove {path}{DONE_SUFFIX}: {_one_line(exc)}")
            return True

        self.session().run(move)

    def put(self, path: str, data: bytes, mtime: float) -> None:
        """Upload under a hidden temporary name in the same folder (never listed), set its
        modification time (``utime``), rename it into place (``posix_rename``, replacing), and
        check the size and time the server then reports."""
        folder_name, name = drop_path_parts(path)
        folder = posixpath.join(self.root, folder_name)
        target = posixpath.join(folder, name)
        # Fixed before the first try: a retry after a reconnect writes the same temporary file.
        temporary = posixpath.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.part")

        def upload(sftp: paramiko.SFTPClient) -> None:
            upload_atomically(sftp, data, temporary, target, mtime)

        self._write(upload, f"could not put {path} into {self.describe()}")

    def remove(self, path: str) -> None:
        folder_name, name = drop_path_parts(path)
        remote = posixpath.join(self.root, folder_name, name)

        def delete(sftp: paramiko.SFTPClient) -> None:
            try:
                sftp.remove(remote)
            except FileNotFoundError:
                pass

        self._write(delete, f"could not remove {path} from {self.describe()}")

    def _write(self, change: Callable[[paramiko.SFTPClient], None], failed: str) -> None:
        """Run a change of the inbox; a server that refuses it: InboxWriteRefused(failed: why)."""
        try:
            self.session().run(change)
        except InboxUnavailable:
            raise
        except OSError as exc:
            raise InboxWriteRefused(f"{failed}: {_one_line(exc)}") from exc
