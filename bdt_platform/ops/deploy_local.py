"""``bdt deploy-local``: the platform as Kubernetes runs it, as separate processes on one machine.

What runs, in start order (each in its own process group, with its log in
``$BDT_HOME/deploy/logs/<name>.log``):

1. ``postgres``: the Dagster instance's database (runs, event log, schedules and their ticks).
   ``BDT_DAGSTER_PG_URL`` (or ``--pg-url``) names a server that already runs; without it a
   private server is started from ``$BDT_HOME/postgres`` (``ops/local_postgres.py``: created by
   ``initdb`` the first time, kept between starts).
2. ``code-server``: ``dagster api grpc -m bdt_platform.definitions``, the user-code deployment:
   it loads the definitions and runs each launched run in a subprocess of its own
   (``DefaultRunLauncher``). Waited for until it answers a gRPC health check.
3. ``daemon``: ``dagster-daemon run``: schedules, sensors, the run queue
   (``QueuedRunCoordinator``), run retries and run monitoring.
4. ``webserver``: ``dagster-webserver``, the UI and its GraphQL API. Waited for until it
   answers ``/server_info``.

The daemon and the webserver read the code server through ``$BDT_HOME/deploy/workspace.yaml``
(``grpc_server``); all three read the instance from ``$BDT_HOME/deploy/dagster/dagster.yaml``
(PostgreSQL storage named by ``BDT_DAGSTER_PG_URL``, never its value, and the run queue, run
launcher, run retries, run monitoring, pools and tick retention of ``core/runs.py``).
``$BDT_HOME/deploy/env.sh`` sets the environment that points ``dagster`` and ``bdt`` commands
at the deployment; ``$BDT_HOME/deploy/processes.json`` lists the pids and logs.

A process that dies while starting, or later, stops the others and the command exits 1 naming
it. SIGINT (Ctrl-C) or SIGTERM stops everything in reverse order: SIGTERM to each process
group, SIGKILL after ``--stop-timeout`` seconds (a second signal: at once), then PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bdt_platform.core.settings import Settings

LOCATION_NAME = "bdt_platform"
DEFINITIONS_MODULE = "bdt_platform.definitions"
#: The repository root: the code server's working directory (dbt_project/, workspace files).
ROOT = Path(__file__).resolve().parents[2]


class DeployError(RuntimeError):
    """The deployment could not start or a process died; the message names the process."""


@dataclass
class Child:
    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def exited(self) -> int | None:
        return self.popen.poll() if self.popen else None


@dataclass
class Layout:
    """Where the deployment keeps its files under ``$BDT_HOME/deploy``."""

    home: Path

    @property
    def folder(self) -> Path:
        return self.home / "deploy"

    @property
    def logs(self) -> Path:
        return self.folder / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.folder / "dagster"

    @property
    def workspace(self) -> Path:
        return self.folder / "workspace.yaml"

    @property
    def env_file(self) -> Path:
        return self.folder / "env.sh"

    @property
    def processes(self) -> Path:
        return self.folder / "processes.json"


def instance_yaml(dagster_home: Path) -> str:
    """The deployment's ``dagster.yaml``: bdt's PostgreSQL instance (``runs.instance_config``)
    with the run queue and the run launcher named, as the Helm chart's instance has them."""
    from bdt_platform.core.runs import INSTANCE_CONFIG_MARK, instance_config

    body = instance_config(dagster_home, postgres=True)
    assert body.startswith(INSTANCE_CONFIG_MARK)
    # Not bdt's mark: instance_for (bdt ingest with this DAGSTER_HOME) leaves the file as it is.
    return ("# Written by bdt deploy-local (bdt_platform/ops/deploy_local.py) at each start.\n"
            + body[len(INSTANCE_CONFIG_MARK) + 1:]
            + "run_coordinator:\n"
              "  module: dagster.core.run_coordinator\n"
              "  class: QueuedRunCoordinator\n"
              "run_launcher:\n"
              "  module: dagster\n"
              "  class: DefaultRunLauncher\n")


def workspace_yaml(host: str, port: int) -> str:
    return ("# Written by bdt deploy-local: the daemon and the webserver load the definitions\n"
            "# from the code server (dagster api grpc) at this address.\n"
            "load_from:\n"
            "  - grpc_server:\n"
            f"      host: {host}\n"
            f"      port: {port}\n"
            f"      location_name: {LOCATION_NAME}\n")


def _proc_table() -> list[tuple[int, int, int, str]]:
    """``(pid, ppid, pgid, state)`` of every process (Linux ``/proc``); empty elsewhere."""
    table = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        table.append((int(entry.name), int(fields[1]), int(fields[2]), fields[0]))
    return table


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (children, theirs, ...), zombies left out."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for child, parent, _, state in table:
        if state != "Z":
            children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie, waiting to be reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2:].split()[0] != "Z"
    except OSError:
        if Path("/proc").is_dir():
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_members(pgid: int) -> set[int]:
    return {pid for pid, _, group, state in _proc_table() if group == pgid and state != "Z"}


@dataclass
class Deployment:
    """The supervisor: :meth:`start`, :meth:`wait` (until a signal or a death), :meth:`stop`."""

    settings: Settings
    port: int = 3000
    host: str = "127.0.0.1"
    grpc_port: int = 4000
    pg_url: str | None = None
    pg_dir: Path | None = None
    pg_port: int | None = None
    start_timeout: float = 300.0
    stop_timeout: float = 20.0
    echo: Callable[[str], None] = print
    children: list[Child] = field(default_factory=list)
    postgres: object | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _hurry: threading.Event = field(default_factory=threading.Event)
    _signal: str | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.settings.home)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- signals ---------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def handler(number, _frame):
            if self._stopping.is_set():
                self._hurry.set()  # a second signal: SIGKILL at once
            self._signal = signal.Signals(number).name
            self._stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def request_stop(self) -> None:
        self._stopping.set()

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise DeployError(f"stopped by {self._signal or 'request'} while starting")

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        from bdt_platform.core.runs import quiet_warnings

        quiet_warnings()
        layout = self.layout
        running = self._already_running()
        if running:
            raise DeployError(f"a deployment of {self.settings.home} is already running "
                              f"({running}; {layout.processes}): stop it first")
        for folder in (layout.logs, layout.dagster_home):
            folder.mkdir(parents=True, exist_ok=True)
        url = self._start_postgres()
        self._check_stop()
        # The driver form dagster-postgres needs (settings.dagster_pg_driver_url).
        settings = dataclasses.replace(self.settings, dagster_pg_url=url)
        driver_url = settings.dagster_pg_driver_url
        (layout.dagster_home / "dagster.yaml").write_text(instance_yaml(layout.dagster_home))
        layout.workspace.write_text(workspace_yaml(self.host, self.grpc_port))
        env = self._environment(driver_url)
        self._write_env_file()
        self._spawn(Child("code-server", [
            sys.executable, "-m", "dagster", "api", "grpc", "-m", DEFINITIONS_MODULE,
            "-h", self.host, "-p", str(self.grpc_port), "--location-name", LOCATION_NAME],
            layout.logs / "code-server.log"), env)
        self._wait_until("code-server", self._grpc_serving)
        self._spawn(Child("daemon", [
            sys.executable, "-m", "dagster._daemon", "run", "-w", str(layout.workspace)],
            layout.logs / "daemon.log"), env)
        self._spawn(Child("webserver", [
            sys.executable, "-m", "dagster_webserver", "-w", str(layout.workspace),
            "-h", self.host, "-p", str(self.port)], layout.logs / "webserver.log"), env)
        self._wait_until("webserver", self._webserver_answers)
        self._check_alive()
        self._write_processes()

    def _already_running(self) -> str:
        """The processes of this home's deployment (``processes.json``) that still run, as
        ``name pid, ...``; empty when none (a file left by a killed supervisor is stale)."""
        try:
            recorded = json.loads(self.layout.processes.read_text())["processes"]
        except (OSError, ValueError, KeyError):
            return ""
        found = []
        for name, process in recorded.items():
            pid = process.get("pid")
            if name == "postgres" or not pid or not alive(pid):
                continue
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                command = b"dagster"
            if b"dagster" in command:
                found.append(f"{name} pid {pid}")
        return ", ".join(found)

    def _start_postgres(self) -> str:
        url = self.pg_url or self.settings.dagster_pg_url
        if url:
            self.echo("postgres    BDT_DAGSTER_PG_URL (a server that already runs; not started "
                      "or stopped here)")
            return url
        from bdt_platform.ops.local_postgres import LocalPostgres, free_port

        folder = self.pg_dir or self.settings.home / "postgres"
        server = LocalPostgres(folder=folder, port=self.pg_port or free_port())
        self.echo(f"postgres    starting a private server in {folder} on "
                  f"127.0.0.1:{server.port}")
        url = server.start()
        self.postgres = server
        self.echo(f"postgres    pid {self._postgres_pid()}  log {server.log}")
        return url

    def _postgres_pid(self) -> int | None:
        if self.postgres is None:
            return None
        try:
            return int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _environment(self, driver_url: str) -> dict[str, str]:
        from bdt_platform.core.resources import (EVENT_BATCH_SWITCH, LOCAL_EVENT_BATCH_SIZE,
                                                 PLANNED_EVENTS_SWITCH)
        from bdt_platform.core.runs import PG_URL_VARIABLE

        batching = ({EVENT_BATCH_SWITCH: str(LOCAL_EVENT_BATCH_SIZE)}
                    if self.settings.env == "local" else {})
        return {PLANNED_EVENTS_SWITCH: "true", **batching, **os.environ,
                "DAGSTER_HOME": str(self.layout.dagster_home),
                "BDT_HOME": str(self.settings.home),
                PG_URL_VARIABLE: driver_url,
                "PYTHONUNBUFFERED": "1"}

    def _write_env_file(self) -> None:
        """``env.sh``: ``DAGSTER_HOME`` and ``BDT_HOME`` of the deployment; with the private
        server also its URL, read from its password file when sourced (never written here)."""
        layout = self.layout
        lines = ["# Source this file to point dagster and bdt commands at the deployment that",
                 "# bdt deploy-local runs (written at each start).",
                 f"export BDT_HOME={shlex.quote(str(self.settings.home))}",
                 f"export DAGSTER_HOME={shlex.quote(str(layout.dagster_home))}"]
        if self.postgres is not None:
            server = self.postgres
            lines.append(
                f"export BDT_DAGSTER_PG_URL=\"postgresql+psycopg2://bdt:$(cat "
                f"{shlex.quote(str(server.password_file))})@127.0.0.1:{server.port}/dagster\"")
        else:
            lines.append("# BDT_DAGSTER_PG_URL: the server you gave bdt deploy-local (not "
                         "written here: it holds a password)")
        layout.env_file.write_text("\n".join(lines) + "\n")

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        self._check_stop()
        log = child.log.open("ab")
        try:
            child.popen = subprocess.Popen(child.command, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                                           start_new_session=True)
        finally:
            log.close()
        self.children.append(child)
        self.echo(f"{child.name:<11} pid {child.pid}  log {child.log}")

    def _grpc_serving(self) -> bool:
        """The code server answers gRPC's health check (``dagster api grpc-health-check``)."""
        import contextlib
        import io
        import socket

        try:  # the port opens once the definitions are loaded
            socket.create_connection((self.host, self.grpc_port), timeout=2).close()
        except OSError:
            return False
        from dagster._grpc.client import DagsterGrpcClient

        with contextlib.redirect_stdout(io.StringIO()):  # it prints the refusal
            try:
                client = DagsterGrpcClient(port=self.grpc_port, host=self.host)
                return client.health_check_query() == "SERVING"
            except Exception:  # noqa: BLE001 - not up yet
                return False

    def _webserver_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _wait_until(self, name: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            self._check_stop()
            self._check_alive()
            if time.monotonic() > deadline:
                child = next(c for c in self.children if c.name == name)
                raise DeployError(f"the {name} process (pid {child.pid}) did not answer within "
                                  f"{self.start_timeout:.0f}s; see its log {child.log}")
            time.sleep(0.5)

    def _check_alive(self) -> None:
        for child in self.children:
            code = child.exited()
            if code is not None:
                raise DeployError(f"the {child.name} process (pid {child.pid}) exited with code "
                                  f"{code}; see its log {child.log}:\n{_tail(child.log)}")

    def _write_processes(self) -> None:
        processes = {"postgres": {"pid": self._postgres_pid(),
                                  "log": str(self.postgres.log) if self.postgres else None,
                                  "managed": self.postgres is not None}}
        processes.update({c.name: {"pid": c.pid, "log": str(c.log), "command": c.command}
                          for c in self.children})
        self.layout.processes.write_text(json.dumps(
            {"url": self.url, "workspace": str(self.layout.workspace),
             "dagster_home": str(self.layout.dagster_home), "processes": processes}, indent=2))

    # -- run and stop ----------------------------------------------------------------------

    def wait(self) -> None:
        """Until a signal (returns) or a process's death (:class:`DeployError`)."""
        while not self._stopping.wait(1.0):
            self._check_alive()

    def stop(self) -> None:
        """Every process in reverse start order, then the private PostgreSQL."""
        ours = bool(self.children or self.postgres)
        for child in reversed(self.children):
            self._stop_child(child)
        if self.postgres is not None:
            self.echo("stopping postgres")
            self.postgres.stop()
        self.children.clear()
        if ours:  # not another deployment's, refused at start
            self.layout.processes.unlink(missing_ok=True)

    def _stop_child(self, child: Child) -> None:
        if child.popen is None:
            return
        pgid = child.pid  # start_new_session: the child leads its own group
        # Its run workers and other subprocesses, whichever group they are in.
        tree = descendants(child.pid) | {child.pid}

        def remaining() -> set[int]:
            child.popen.poll()  # reap the leader
            return {pid for pid in tree | _group_members(pgid) if alive(pid)}

        if not remaining():
            return
        self.echo(f"stopping {child.name} (pid {child.pid})")
        _signal_all(pgid, tree, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while remaining() and time.monotonic() < deadline and not self._hurry.is_set():
            time.sleep(0.2)
        left = remaining()
        if left:
            self.echo(f"{child.name}: still running after {self.stop_timeout:.0f}s, killing "
                      f"pid(s) {', '.join(map(str, sorted(left)))}")
            _signal_all(pgid, left, signal.SIGKILL)
            try:
                child.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass


def _signal_all(pgid: int, pids: set[int], number: signal.Signals) -> None:
    try:
        os.killpg(pgid, number)
    except (ProcessLookupError, PermissionError):
        pass
    for pid in pids:
        try:
            os.kill(pid, number)
        except (ProcessLookupError, PermissionError):
            pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run(settings: Settings, echo: Callable[[str], None] = print, **options) -> int:
    """Start the deployment, wait for Ctrl-C/SIGTERM, stop it. 0 after a clean stop; 1 when a
    process would not start or died (the message names it); 2 when PostgreSQL cannot start."""
    from bdt_platform.ops.local_postgres import PostgresUnavailable

    deployment = Deployment(settings=settings, echo=echo, **options)
    deployment.install_signal_handlers()
    code = 0
    try:
        deployment.start()
        layout = deployment.layout
        echo(f"Dagster UI: {deployment.url}  (DAGSTER_HOME={layout.dagster_home}, "
             f"workspace {layout.workspace})")
        echo(f"ready: `source {layout.env_file}` points dagster/bdt commands at this "
             "deployment; Ctrl-C or SIGTERM stops it")
        deployment.wait()
        echo(f"{deployment._signal or 'stop'}: stopping the deployment")
    except PostgresUnavailable as exc:
        print(f"bdt deploy-local: postgres: {exc}", file=sys.stderr)
        code = 2
    except DeployError as exc:
        print(f"bdt deploy-local: {exc}", file=sys.stderr)
        code = 1
    finally:
        deployment.stop()
    echo("stopped")
    return code
