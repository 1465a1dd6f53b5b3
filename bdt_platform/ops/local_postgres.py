"""A private PostgreSQL server for one machine: ``initdb`` once into a folder, then started on
127.0.0.1 and stopped with ``pg_ctl``. ``bdt deploy-local`` keeps the Dagster instance in it when
``BDT_DAGSTER_PG_URL`` is not set; the tests start throwaway ones the same way
(``bdt_platform_tests/postgres_server.py``).

The binaries come from PATH or Debian's ``/usr/lib/postgresql/<version>/bin`` (``apt-get
install postgresql``). PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (``runuser -u postgres``), which Debian's package creates; its folder is then
owned by that user, who must be able to reach it (a folder under ``/root`` it cannot).

The folder holds ``data/`` (the cluster), ``sockets/`` (its Unix socket, for the superuser's
set-up only), ``server.log`` and ``password`` (0600, the password of the ``bdt`` role that
owns the ``dagster`` database; TCP connections need it).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

USER = "bdt"
DATABASE = "dagster"
SERVICE_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def server_user_prefix() -> list[str]:
    """The command prefix that runs a PostgreSQL binary as a user it accepts: none, or as root
    ``runuser -u postgres --``."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL refuses to run as root and there is no {SERVICE_USER!r} user to run it "
            "as (Debian's postgresql package creates it)") from None
    if not shutil.which("runuser"):
        raise PostgresUnavailable("running as root, and runuser (util-linux) is not installed "
                                  f"to run PostgreSQL as {SERVICE_USER!r}")
    return ["runuser", "-u", SERVICE_USER, "--"]


def binaries() -> tuple[str, str]:
    """``(initdb, pg_ctl)``, or :class:`PostgresUnavailable` saying how to install them."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not initdb or not pg_ctl:
        raise PostgresUnavailable("PostgreSQL's initdb/pg_ctl are neither on PATH nor under "
                                  "/usr/lib/postgresql/*/bin (apt-get install postgresql)")
    return initdb, pg_ctl


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{what} failed ({done.returncode}): {' '.join(command)}\n"
                                  f"{done.stdout}{done.stderr}".rstrip())


@dataclass
class LocalPostgres:
    """One server in ``folder`` on ``127.0.0.1:port``. :meth:`start` creates the cluster, the
    role and the database the first time and returns the URL; :meth:`stop` stops it."""

    folder: Path
    port: int
    host: str = "127.0.0.1"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def sockets(self) -> Path:
        return self.folder / "sockets"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    @property
    def url(self) -> str:
        password = self.password_file.read_text().strip()
        return f"postgresql://{USER}:{password}@{self.host}:{self.port}/{DATABASE}"

    def _prefix_and_folders(self) -> list[str]:
        prefix = server_user_prefix()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        if prefix:
            owner = pwd.getpwnam(SERVICE_USER)
            for path in (self.folder, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            reachable = subprocess.run([*prefix, "test", "-w", str(self.folder)],
                                       stdin=subprocess.DEVNULL, capture_output=True)
            if reachable.returncode != 0:
                raise PostgresUnavailable(
                    f"the {SERVICE_USER!r} user (PostgreSQL refuses to run as root) cannot reach "
                    f"{self.folder}: one of its parent folders is closed to other users; choose "
                    "a folder it can reach (bdt deploy-local --pg-dir /var/tmp/bdt-postgres)")
        return prefix

    def start(self) -> str:
        """Start the server (creating it the first time); the URL of its ``dagster`` database."""
        initdb, pg_ctl = binaries()
        prefix = self._prefix_and_folders()
        first_time = not (self.data / "PG_VERSION").exists()
        if first_time:
            # Local (socket) connections trust the superuser, which sets the role up; TCP
            # connections, the ones Dagster makes, need the password.
            _run([*prefix, initdb, "-D", str(self.data), "-U", SERVICE_USER, "-E", "UTF8",
                  "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"], "initdb")
        _run([*prefix, pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
              "-o", f"-c listen_addresses={self.host} -p {self.port} -k {self.sockets}",
              "start"], f"pg_ctl start (log: {self.log})")
        if first_time or not self.password_file.exists():
            try:
                self._create_role()
            except Exception:
                self.stop()
                raise
        return self.url

    def _create_role(self) -> None:
        import psycopg2

        password = secrets.token_urlsafe(16)
        admin = psycopg2.connect(host=str(self.sockets), port=self.port, user=SERVICE_USER,
                                 dbname="postgres")
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (USER,))
                verb = "ALTER" if cursor.fetchone() else "CREATE"
                cursor.execute(f"{verb} ROLE {USER} LOGIN PASSWORD %s", (password,))
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
                if not cursor.fetchone():
                    cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {USER}")
        finally:
            admin.close()
        self.password_file.touch(mode=0o600)
        self.password_file.chmod(0o600)
        self.password_file.write_text(password + "\n")

    def running(self) -> bool:
        _, pg_ctl = binaries()
        done = subprocess.run([*server_user_prefix(), pg_ctl, "-D", str(self.data), "status"],
                              capture_output=True, stdin=subprocess.DEVNULL)
        return done.returncode == 0

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed); nothing when stopped."""
        _, pg_ctl = binaries()
        subprocess.run([*server_user_prefix(), pg_ctl, "-D", str(self.data), "-m", "fast", "-w",
                        "-t", "60", "stop"], capture_output=True, stdin=subprocess.DEVNULL)
