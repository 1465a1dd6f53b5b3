"""The outbox on the partner SFTP server: ``<root>/<partner>/`` (e.g. ``/outbox/mailvendor/``).

Uses the SFTP connection code it shares with the inbox (:class:`~bdt_platform.core.sftp.SftpSession`): key
authentication, known_hosts only (unknown host keys refused), one line per failure
(:class:`OutboxUnavailable`). An upload goes to ``.<file>.part``, its size is checked on the
server, and only then is it renamed to ``<file>`` (``posix-rename``, replacing an older file of
that name), so the vendor never reads half a file.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import stat
from typing import TYPE_CHECKING, ClassVar

from bdt_platform.core.sftp import SftpResource, upload_atomically
from bdt_platform.outbox.base import (TEMP_PREFIX, Outbox, OutboxReceipt, OutboxUnavailable,
                                      check_names, temp_name)

if TYPE_CHECKING:  # imported by the connection code when it connects (``core.sftp``)
    import paramiko


class SftpOutbox(SftpResource, Outbox):
    """Files for partners in ``<root>/<partner>/`` on the SFTP server the inbox uses."""

    root: str = "/outbox"
    unavailable: ClassVar[type[Exception]] = OutboxUnavailable

    def publish(self, partner: str, filename: str, data: bytes) -> OutboxReceipt:
        check_names(partner, filename)
        folder = posixpath.join(self.root, partner)
        temporary = posixpath.join(folder, temp_name(filename))
        target = posixpath.join(folder, filename)

        def upload(sftp: paramiko.SFTPClient) -> None:
            upload_atomically(sftp, data, temporary, target)

        try:
            self.session().run(upload)
        except OutboxUnavailable:
            raise
        except OSError as exc:
            raise OutboxUnavailable(f"could not publish {target} on {self.host}:{self.port}: "
                                    f"{' '.join(str(exc).split())}") from exc
        return OutboxReceipt(f"sftp://{self.username}@{self.host}:{self.port}{target}", partner,
                             filename, len(data), hashlib.sha256(data).hexdigest())

    def list_files(self, partner: str) -> list[str]:
        folder = posixpath.join(self.root, partner)

        def listing(sftp: paramiko.SFTPClient) -> list[str]:
            try:
                entries = sftp.listdir_attr(folder)
            except FileNotFoundError:
                return []
            return sorted(a.filename for a in entries if stat.S_ISREG(a.st_mode or 0)
                          and not a.filename.startswith(TEMP_PREFIX))

        return self.session().run(listing)

    def read_bytes(self, partner: str, filename: str) -> bytes:
        check_names(partner, filename)
        remote = posixpath.join(self.root, partner, filename)

        def read(sftp: paramiko.SFTPClient) -> bytes:
            buffer = io.BytesIO()
            sftp.getfo(remote, buffer)
            return buffer.getvalue()

        return self.session().run(read)
