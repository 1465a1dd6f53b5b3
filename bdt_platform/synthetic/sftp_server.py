"""A real SSH/SFTP server for tests and the sensor benchmark: asyncssh, in-process, on 127.0.0.1.

The server runs its own asyncio event loop in a background thread and serves one chroot folder
over SFTP (no shell, no exec, no port forwarding). Authentication is by public key only, for one
user name; the host key and the client key are generated per server and written, with a
``known_hosts`` line for ``[127.0.0.1]:<port>``, into a work folder.

It can be stopped and started again on the same port with the same host key (the outage tests),
made read-only (every write, rename, mkdir or remove is refused with "permission denied"), and it
records the write-side operations it served (``operations``), so tests can check e.g. that an
upload was written under a temporary name and renamed into place.

    server = SftpTestServer(tmp_path / "sftp")
    server.start()
    server.url("/inbox")   # sftp://bdt@127.0.0.1:PORT/inbox
    server.environ()       # BDT_INBOX, BDT_SFTP_KEY, BDT_SFTP_KNOWN_HOSTS
    server.stop()

``server_process(workdir)`` runs the same server in a process of its own (``python -m
bdt_platform.synthetic.sftp_server WORKDIR``), as a partner's server would be: the sensor benchmark
times the client's work without the server's sharing its interpreter lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import paramiko
from asyncssh.sftp import FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_WRITE

logging.getLogger("asyncssh").setLevel(logging.WARNING)

_WRITE_FLAGS = FXF_WRITE | FXF_CREAT | FXF_TRUNC | FXF_APPEND


class SftpTestServer:
    """One SFTP server over ``<workdir>/root``; keys and known_hosts in ``<workdir>``."""

    def __init__(self, workdir: Path, username: str = "bdt", key_type: str = "ssh-ed25519",
                 port: int | None = None, reuse_keys: bool = False):
        """``port``: listen there (default: an ephemeral port); ``reuse_keys``: take the host
        and client keys a server over the same ``workdir`` wrote (``host_key``,
        ``client_key``), if there are: the same server again after its process died."""
        self.workdir = Path(workdir)
        self.root = self.workdir / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.port: int | None = port
        self.read_only = False
        self.operations: list[tuple[str, ...]] = []
        self._listened = False

        self.client_key_file = self.workdir / "client_key"
        host_key_file = self.workdir / "host_key"
        if reuse_keys and host_key_file.exists() and self.client_key_file.exists():
            self.host_key = asyncssh.read_private_key(host_key_file)
            self.client_key = asyncssh.read_private_key(self.client_key_file)
        else:
            self.host_key = asyncssh.generate_private_key(key_type)
            self.client_key = asyncssh.generate_private_key(key_type)
            host_key_file.write_bytes(self.host_key.export_private_key("openssh"))
            host_key_file.chmod(0o600)
        self.client_key_file.write_bytes(self.client_key.export_private_key("openssh"))
        self.client_key_file.chmod(0o600)
        self.client_key_file.with_name("client_key.pub").write_bytes(
            self.client_key.export_public_key("openssh"))
        self.known_hosts_file = self.workdir / "known_hosts"
        self._authorized = asyncssh.import_authorized_keys(
            self.client_key.export_public_key("openssh").decode())

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp-test-server",
                                        daemon=True)
        self._thread.start()
        self._acceptor = None
        self._connections: set[asyncssh.SSHServerConnection] = set()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "SftpTestServer":
        """Listen on 127.0.0.1 (an ephemeral port the first time, the same port afterwards)."""
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (clients see the server vanish)."""
        self._call(self._stop())

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and its event loop thread."""
        if self._loop.is_running():
            self.stop()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    @property
    def running(self) -> bool:
        return self._acceptor is not None

    # -- what a client needs ----------------------------------------------------------------------

    def host_key_line(self) -> str:
        """The ``known_hosts`` line for this server (OpenSSH's ``[host]:port`` form)."""
        public = self.host_key.export_public_key("openssh").decode().strip()
        return f"[127.0.0.1]:{self.port} {public}\n"

    def url(self, path: str = "/inbox") -> str:
        return f"sftp://{self.username}@127.0.0.1:{self.port}{path}"

    def inbox(self, path: str = "/inbox"):
        """An ``SftpInbox`` on this server, with the client key and known_hosts it trusts."""
        from bdt_platform.inbox.sftp import SftpInbox

        return SftpInbox.from_url(self.url(path), str(self.client_key_file),
                                  str(self.known_hosts_file))

    def environ(self, path: str = "/inbox") -> dict[str, str]:
        """The variables that point the platform at this server."""
        return {"BDT_INBOX": self.url(path), "BDT_SFTP_KEY": str(self.client_key_file),
                "BDT_SFTP_KNOWN_HOSTS": str(self.known_hosts_file)}

    def local(self, path: str) -> Path:
        """The local file behind a server path such as ``/inbox/statehhs/x.csv``."""
        return self.root / path.lstrip("/")

    @contextlib.contextmanager
    def client(self) -> Iterator[paramiko.SFTPClient]:
        """A partner-side SFTP session (paramiko, host key checked against known_hosts)."""
        ssh = paramiko.SSHClient()
        ssh.load_host_keys(str(self.known_hosts_file))
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        ssh.connect("127.0.0.1", port=self.port, username=self.username,
                    key_filename=str(self.client_key_file), look_for_keys=False,
                    allow_agent=False, timeout=10)
        try:
            sftp = ssh.open_sftp()
            yield sftp
            sftp.close()
        finally:
            ssh.close()

    def drop(self, path: str, data: bytes, mtime: float | None = None,
             done_marker: bool = False) -> None:
        """Upload ``data`` to ``path`` over SFTP as a partner would (folders created), then
        optionally set its modification time and write a ``<path>.done`` marker."""
        with self.client() as sftp:
            folder = ""
            for part in path.strip("/").split("/")[:-1]:
                folder += "/" + part
                try:
                    sftp.stat(folder)
                except FileNotFoundError:
                    sftp.mkdir(folder)
            with sftp.open(path, "wb") as handle:
                handle.write(data)
            if mtime is not None:
                sftp.utime(path, (mtime, mtime))
            if done_marker:
                with sftp.open(path + ".done", "wb"):
                    pass

    # -- internals --------------------------------------------------------------------------------

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    async def _start(self) -> None:
        if self._acceptor is not None:
            return
        self._acceptor = await asyncssh.listen(
            "127.0.0.1", self.port or 0,
            server_host_keys=[self.host_key],
            server_factory=lambda: _AuthServer(self),
            sftp_factory=lambda channel: _ChrootSftp(channel, self),
            allow_scp=False,
            password_auth=False,
            kbdint_auth=False,
            reuse_address=True,
        )
        if not self._listened:
            self._listened = True
            self.port = self._acceptor.get_port()
            self.known_hosts_file.write_text(self.host_key_line())

    async def _stop(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for connection in list(self._connections):
            connection.abort()
        self._connections.clear()
        await asyncio.sleep(0)


class _AuthServer(asyncssh.SSHServer):
    """Public-key authentication for the configured user only."""

    def __init__(self, owner: SftpTestServer):
        self._owner = owner
        self._connection = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._owner._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connections.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        if username == self._owner.username:
            self._connection.set_authorized_keys(self._owner._authorized)
        return True  # authentication is always required

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False


class _ChrootSftp(asyncssh.SFTPServer):
    """SFTP confined to the server's root; refuses every write while ``read_only`` is set."""

    def __init__(self, channel, owner: SftpTestServer):
        super().__init__(channel, chroot=os.fsencode(owner.root))
        self._owner = owner

    def _write(self, operation: str, *paths: bytes) -> None:
        if self._owner.read_only:
            raise asyncssh.SFTPPermissionDenied("read-only server")
        self._owner.operations.append((operation, *(os.fsdecode(p) for p in paths)))

    def open(self, path, pflags, attrs):
        if pflags & _WRITE_FLAGS:
            self._write("open_write", path)
        return super().open(path, pflags, attrs)

    def open56(self, path, desired_access, flags, attrs):
        if desired_access & (asyncssh.sftp.ACE4_WRITE_DATA | asyncssh.sftp.ACE4_APPEND_DATA):
            self._write("open_write", path)
        return super().open56(path, desired_access, flags, attrs)

    def setstat(self, path, attrs):
        self._write("setstat", path)
        return super().setstat(path, attrs)

    def remove(self, path):
        self._write("remove", path)
        return super().remove(path)

    def mkdir(self, path, attrs):
        self._write("mkdir", path)
        return super().mkdir(path, attrs)

    def rmdir(self, path):
        self._write("rmdir", path)
        return super().rmdir(path)

    def rename(self, oldpath, newpath):
        self._write("rename", oldpath, newpath)
        return super().rename(oldpath, newpath)

    def posix_rename(self, oldpath, newpath):
        self._write("posix_rename", oldpath, newpath)
        return super().posix_rename(oldpath, newpath)

    def symlink(self, oldpath, newpath):
        self._write("symlink", oldpath, newpath)
        return super().symlink(oldpath, newpath)

    def link(self, oldpath, newpath):
        self._write("link", oldpath, newpath)
        return super().link(oldpath, newpath)


def openssh_sftp(server: SftpTestServer, commands: list[str], cwd: Path | None = None,
                 known_hosts: Path | None = None) -> subprocess.CompletedProcess:
    """Run OpenSSH's ``sftp`` client in batch mode against ``server`` (strict host key
    checking against the server's known_hosts file, our client key, no user config)."""
    batch = server.workdir / "sftp-batch.txt"
    batch.write_text("\n".join(commands) + "\n")
    command = [
        "sftp", "-F", "/dev/null", "-b", str(batch), "-P", str(server.port),
        "-i", str(server.client_key_file),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts or server.known_hosts_file}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
        f"{server.username}@127.0.0.1",
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def start_server(workdir: Path) -> SftpTestServer:
    """A running server over ``<workdir>/root`` with ``/inbox`` and ``/outbox`` folders
    (tests wrap this in a fixture and ``close()`` it afterwards)."""
    server = SftpTestServer(workdir)
    (server.root / "inbox").mkdir(exist_ok=True)
    (server.root / "outbox").mkdir(exist_ok=True)
    return server.start()


@dataclass(frozen=True)
class ServerProcess:
    """What a client needs of a server started by ``server_process``."""

    base_url: str  # sftp://bdt@127.0.0.1:PORT
    workdir: Path

    def url(self, path: str = "/inbox") -> str:
        return self.base_url + path

    @property
    def client_key_file(self) -> Path:
        return self.workdir / "client_key"

    @property
    def known_hosts_file(self) -> Path:
        return self.workdir / "known_hosts"


@contextlib.contextmanager
def server_process(workdir: Path, port: int | None = None) -> Iterator[ServerProcess]:
    """An ``SftpTestServer`` over ``<workdir>/root`` running in a child process until the block
    ends. Files put under ``<workdir>/root`` are served as they are. With ``port``: on that
    port, with the keys an earlier server over ``workdir`` wrote (the same server restarted)."""
    process = subprocess.Popen([sys.executable, "-m", "bdt_platform.synthetic.sftp_server",
                                str(workdir), *([str(port)] if port else [])],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("sftp://"):
            raise RuntimeError(f"the SFTP server process did not start (exit {process.poll()})")
        yield ServerProcess(base_url, Path(workdir))
    finally:
        process.stdin.close()  # the server stops when its input ends
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    """Serve ``WORKDIR/root`` until standard input closes; print ``sftp://user@host:port``.
    ``WORKDIR PORT``: on that port, with the keys an earlier server over WORKDIR wrote."""
    workdir, *port = sys.argv[1:] if argv is None else argv
    server = SftpTestServer(Path(workdir), port=int(port[0]) if port else None,
                            reuse_keys=bool(port)).start()
    print(server.url(""), flush=True)
    sys.stdin.read()
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
