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
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bdt_platform.ops.local_postgres import DATABASE, SERVICE_USER, USER
from bdt_platform.ops.local_postgres import PostgresUnavailable as Unavailable  # noqa: F401
from bdt_platform.ops.local_postgres import binaries, find_binary  # noqa: F401
from bdt_platform.ops.local_postgres import free_port as _free_port
from bdt_platform.ops.local_postgres import server_user_prefix as _as_server_user


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


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {' '.join(command)}\n"
                           f"{done.stdout}{done.stderr}")


@contextlib.contextmanager
def running_postgres() -> Iterator[RunningPostgres]:
    """Start a throwaway server; stop it and remove its folder on the way out."""
    initdb, pg_ctl = binaries()
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
