"""SFTP connections to the partner server, shared by the inbox and the outbox: ``sftp://`` URLs,
one kept SSH connection with an SFTP channel (:class:`SftpSession`), and the remote file helpers
(``makedirs``, an atomic ``replace``, ``upload_atomically``).

Security: key authentication only, and the server's host key must already be in the known_hosts
file: an unknown or changed host key is refused (paramiko ``RejectPolicy``), never added. Every
failure to reach or trust the server - refused connection, timeout, unknown host key, rejected
key - becomes the caller's "unavailable" error (:class:`InboxUnavailable` by default) with a
one-line reason.
"""

from __future__ import annotations

import io
import logging
import posixpath
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit


import dagster as dg
from pydantic import PrivateAttr

from bdt_platform.core.inbox_interface import InboxUnavailable

if TYPE_CHECKING:  # paramiko is imported when a connection is made: ~0.2 s of every command
    import paramiko  # that has a local inbox (``bdt ingest`` from a folder) otherwise

# paramiko's transport thread logs full tracebacks for failures we already report in one line.
logging.getLogger("paramiko.transport").setLevel(logging.CRITICAL)

T = TypeVar("T")
DEFAULT_PORT = 22
DEFAULT_TIMEOUT_SECONDS = 15.0


# -- sftp://user@host:port/path -----------------------------------------------------------------

@dataclass(frozen=True)
class SftpUrl:
    """The parts of ``sftp://user@host:port/path`` (port defaults to 22)."""

    username: str
    host: str
    port: int
    path: str

    def __str__(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.path}"


def parse_sftp_url(url: str) -> SftpUrl:
    """Parse ``sftp://user@host[:port]/path``; raise ``ValueError`` saying what is wrong."""
    parts = urlsplit(url.strip())
    if parts.scheme != "sftp":
        raise ValueError(f"{url!r} is not an sftp:// URL")
    if parts.password is not None:
        raise ValueError("the SFTP URL must not carry a password; key authentication only "
                         "(BDT_SFTP_KEY)")
    if not parts.username:
        raise ValueError(f"{url!r} names no user (expected sftp://user@host:port/path)")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host (expected sftp://user@host:port/path)")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"{url!r} has an invalid port") from None
    path = unquote(parts.path or "")
    if not path or path == "/":
        raise ValueError(f"{url!r} names no folder (expected sftp://user@host:port/inbox)")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} must not have a query or fragment")
    return SftpUrl(unquote(parts.username), parts.hostname, port,
                   posixpath.normpath(path).rstrip("/") or "/")


def sibling_folder(path: str, name: str) -> str:
    """``/inbox`` -> ``/outbox``: a folder beside ``path`` on the same server."""
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    return posixpath.join(parent, name)


# -- the shared connection ------------------------------------------------------------------------

@dataclass(frozen=True)
class SftpEndpoint:
    """Where and how to connect: host, port, user, key file and known_hosts file."""

    host: str
    port: int
    username: str
    key_file: str
    known_hosts_file: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def describe(self) -> str:
        return f"{self.username}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH (and paramiko) name the host in known_hosts."""
        return self.host if self.port == DEFAULT_PORT else f"[{self.host}]:{self.port}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class SftpSession:
    """One lazily opened SSH connection with an SFTP channel, reused across calls.

    :meth:`run` opens the connection on first use, runs ``fn(sftp)``, and maps every connection,
    trust or authentication failure to ``unavailable(<one line>)``. If a reused connection turns
    out to be dead (the server restarted), it reconnects once and runs ``fn`` again, so ``fn``
    must be safe to repeat. Errors about a file (no such file, permission denied) on a live
    connection are raised unchanged: the caller decides what they mean.
    """

    def __init__(self, endpoint: SftpEndpoint,
                 unavailable: type[Exception] = InboxUnavailable):
        self.endpoint = endpoint
        self.unavailable = unavailable
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()

    def run(self, fn: Callable[[paramiko.SFTPClient], T]) -> T:
        import paramiko

        with self._lock:
            for attempt in (1, 2):
                reused = self._alive()
                sftp = self._sftp if reused else self._connect()
                try:
                    return fn(sftp)
                except self.unavailable:
                    raise
                except (TimeoutError, socket.timeout) as exc:
                    self.close()
                    raise self.unavailable(f"{self.endpoint.describe()} timed out after "
                                           f"{self.endpoint.timeout_seconds:g}s") from exc
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    if self._alive():
                        raise  # a file-level error on a healthy connection
                    self.close()
                    if not reused or attempt == 2:
                        raise self.unavailable(f"lost the connection to "
                                               f"{self.endpoint.describe()}: {_one_line(exc)}"
                                               ) from exc
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for closeable in (self._sftp, self._client):
                if closeable is not None:
                    try:
                        closeable.close()
                    except Exception:  # noqa: BLE001 - closing a broken connection
                        pass
            self._sftp = self._client = None

    def _alive(self) -> bool:
        if self._client is None or self._sftp is None:
            return False
        transport = self._client.get_transport()
        return bool(transport and transport.is_active()) and not self._sftp.sock.closed

    def _connect(self) -> paramiko.SFTPClient:
        import paramiko

        self.close()
        ep = self.endpoint
        where = ep.describe()
        for label, name in (("private key", ep.key_file), ("known_hosts", ep.known_hosts_file)):
            if not Path(name).is_file():
                raise self.unavailable(f"{label} file {name} does not exist (cannot connect to "
                                       f"{where})")
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(ep.known_hosts_file)
        except (OSError, paramiko.SSHException) as exc:
            raise self.unavailable(f"cannot read known_hosts file {ep.known_hosts_file}: "
                                   f"{_one_line(exc)}") from None
        # Never trust a host key we were not told about, and never write to known_hosts.
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(ep.host, port=ep.port, username=ep.username, key_filename=ep.key_file,
                           look_for_keys=False, allow_agent=False, timeout=ep.timeout_seconds,
                           banner_timeout=ep.timeout_seconds, auth_timeout=ep.timeout_seconds,
                           channel_timeout=ep.timeout_seconds)
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(ep.timeout_seconds)
        except paramiko.BadHostKeyException:
            client.close()
            raise self.unavailable(
                f"host key of {ep.known_hosts_name} does not match {ep.known_hosts_file} "
                "(changed key or man-in-the-middle); refusing to connect") from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise self.unavailable(f"authentication as {where} with key {ep.key_file} failed: "
                                   f"{_one_line(exc)}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "known_hosts" in str(exc):
                raise self.unavailable(
                    f"host key of {ep.known_hosts_name} is not in {ep.known_hosts_file}; refusing "
                    "to connect (add it after checking its fingerprint, e.g. ssh-keyscan)"
                ) from None
            raise self.unavailable(f"SSH error with {where}: {_one_line(exc)}") from None
        except (OSError, EOFError) as exc:
            client.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _one_line(exc)
            raise self.unavailable(f"cannot reach {where}: {reason}") from None
        self._client, self._sftp = client, sftp
        return sftp


def remote_exists(sftp: paramiko.SFTPClient, path: str) -> bool:
    try:
        sftp.stat(path)
        return True
    except FileNotFoundError:
        return False


def makedirs(sftp: paramiko.SFTPClient, path: str) -> None:
    """``mkdir -p`` over SFTP (tolerates folders that exist or appear meanwhile)."""
    missing = []
    current = path.rstrip("/")
    while current and current != "/" and not remote_exists(sftp, current):
        missing.append(current)
        current = posixpath.dirname(current)
    for folder in reversed(missing):
        try:
            sftp.mkdir(folder)
        except OSError:
            if not remote_exists(sftp, folder):
                raise


def upload_atomically(sftp: paramiko.SFTPClient, data: bytes, temporary: str, target: str,
                      mtime: float | None = None) -> None:
    """Write ``data`` to ``temporary`` (its folder made if missing), give it ``mtime`` when set,
    then rename it over ``target``: the target is never seen half-written. The temporary file is
    removed when anything fails; OSError when the server then reports another size."""
    makedirs(sftp, posixpath.dirname(target))
    try:
        sftp.putfo(io.BytesIO(data), temporary, file_size=len(data), confirm=True)
        if mtime is not None:
            sftp.utime(temporary, (mtime, mtime))
        replace(sftp, temporary, target)
    except BaseException:
        try:
            sftp.remove(temporary)
        except Exception:  # noqa: BLE001 - best effort; the name is hidden anyway
            pass
        raise
    attrs = sftp.stat(target)
    if attrs.st_size != len(data):
        raise OSError(f"{target} on the server has {attrs.st_size} bytes, expected {len(data)}")
    if mtime is not None and int(attrs.st_mtime or 0) != int(mtime):
        sftp.utime(target, (mtime, mtime))  # a server whose rename resets times


def replace(sftp: paramiko.SFTPClient, source: str, target: str) -> None:
    """Atomic rename over an existing target (``posix-rename@openssh.com``), with a fallback
    to remove-then-rename for servers without that extension."""
    try:
        sftp.posix_rename(source, target)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError:
        if remote_exists(sftp, target):
            sftp.remove(target)
        sftp.rename(source, target)


class SftpResource(dg.ConfigurableResource):
    """What the inbox and the outbox on the partner SFTP server share: where the server is, how
    to log in, and one connection per resource instance (opened on first use, closed after the
    run or sensor tick that used it). Failures to reach or trust the server raise the
    subclass's ``unavailable`` error."""

    host: str
    port: int = DEFAULT_PORT
    username: str
    root: str
    key_file: str
    known_hosts_file: str
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    _session: SftpSession | None = PrivateAttr(default=None)
    unavailable: ClassVar[type[Exception]] = InboxUnavailable

    @property
    def endpoint(self) -> SftpEndpoint:
        return SftpEndpoint(self.host, self.port, self.username, self.key_file,
                            self.known_hosts_file, self.timeout_seconds)

    def session(self) -> SftpSession:
        if self._session is None:
            self._session = SftpSession(self.endpoint, self.unavailable)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()

    def describe(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.root}"
