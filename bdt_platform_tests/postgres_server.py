"""A real PostgreSQL server for the tests: ``initdb`` into a temporary folder, started on a free
port of 127.0.0.1, one database and one user with a password, removed at the end.

The binaries come from PATH or Debian's ``/usr/lib/postgresql/<version>/bin`` (``.ci/run``
installs Debian's ``postgresql`` package when neither has them). PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` user (``runuser -u postgres``), which
Debian's package creates. When something is missing the fixture says what and skips, or fails
under CI (``CI=true``), where it must run.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "bdt"
DATABASE = "dagster"
SERVICE_USER = "postgres"


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


@dataclass(frozen=True)
class RunningPostgres:
    url: str  # postgresql://bdt:<password>@127.0.0.1:<port>/dagster
    host: str
    port: int
    user: str
    password: str
    database: str

    def connect(self):
        """A psycopg2 connection to the test database as the test user (autocommit)."""
        import psycopg2

        connection = psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                      password=self.password, dbname=self.database)
        connection.autocommit = True
        return connection


def find_binary(name: str) -> str | None:
    """``name`` on PATH, else the newest ``/usr/lib/postgresql/<version>/bin/<name>``."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")

    def version(path: str) -> tuple:
        number = Path(path).parents[1].name
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    return max(candidates, key=version) if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_server_user() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as a user it accepts."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise Unavailable(f"PostgreSQL refuses to run as root and there is no {SERVICE_USER!r} "
                          "user to run it as (Debian's postgresql package creates it)") from None
    if not shutil.which("runuser"):
        raise Unavailable("running as root, and runuser (util-linux) is not installed to run "
                          f"PostgreSQL as {SERVICE_USER!r}")
    return ["runuser", "-u", SERVICE_USER, "--"]


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(command)}\n"
                           f"{done.stdout}{done.stderr}")


@contextlib.contextmanager
def running_postgres() -> Iterator[RunningPostgres]:
    """Start a throwaway server; stop it and remove its folder on the way out."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise Unavailable("PostgreSQL's initdb/pg_ctl are neither on PATH nor under "
                          "/usr/lib/postgresql/*/bin (apt-get install postgresql)")
    prefix = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="bdt-postgres-"))
    data, sockets, log = folder / "data", folder / "sockets", folder / "server.log"
    sockets.mkdir()
    if prefix:
        owner = pwd.getpwnam(SERVICE_USER)
        for path in (folder, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    started = False
    try:
        # Local (socket) connections trust the superuser, which sets the test user up; TCP
        # connections, the ones the platform makes, need the password.
        _run([*prefix, initdb, "-D", str(data), "-U", SERVICE_USER, "-E", "UTF8",
              "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb")
        _run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
              f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off", "start"],
             f"pg_ctl start (log: {log})")
        started = True
        password = secrets.token_urlsafe(16)
        import psycopg2

        admin = psycopg2.connect(host=str(sockets), port=port, user=SERVICE_USER,
                                 dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE ROLE {USER} LOGIN PASSWORD %s", (password,))
            cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        admin.close()
        yield RunningPostgres(url=f"postgresql://{USER}:{password}@127.0.0.1:{port}/{DATABASE}",
                              host="127.0.0.1", port=port, user=USER, password=password,
                              database=DATABASE)
    finally:
        if started:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[RunningPostgres]:
    """A real PostgreSQL for the test session (one per test process)."""
    try:
        with running_postgres() as server:
            yield server
    except Unavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))
