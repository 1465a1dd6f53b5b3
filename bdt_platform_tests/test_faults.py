"""Faults injected into the real servers and files while data lands and builds (issue 26, 6).

Each fault is real: an SFTP server process that dies (SIGKILL) in the middle of serving the
files, a ``bdt ingest`` / ``bdt build`` process group killed with SIGKILL while it loads or
builds, on a Dagster instance in a real PostgreSQL, and a lake on a real, full filesystem (a
tmpfs; ENOSPC). Each time the error names what failed, no partition holds a part of its new
rows, nothing is lost or loaded twice, and the next run holds exactly the rows of an
uninterrupted run of the same files (``reference``). docs/failures.md says what the operator
sees and does for each.

Already covered elsewhere (not repeated here): the SFTP server down before/between runs
(test_sftp_inbox, test_inbox_sensor ``test_server_lost_during_the_run...``), a worker process
SIGKILLed mid-chunk or mid-archive (test_workers), a locked DuckDB file and Google 5xx retried
(test_retries), the outbox server down (test_outbox, test_retries), a slot held by an ended
run (test_operations).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import retries
from bdt_platform.core.settings import Settings
from bdt_platform.synthetic import generate
from bdt_platform.synthetic.sftp_server import server_process

from .conftest import TEST_PII_KEY, make_settings
from .faulty_sftp import faulty_server_process
from .postgres_server import postgres_server  # noqa: F401 - fixture

STATE, MONTH = "PA", dt.date(2024, 1, 1)
SCALE, SEED = 0.3, 11
FEEDS = ["eligibility", "outcomes", "mailreturns", "nudges"]
CASEMGMT = ["clients", "applications", "calls"]
MARTS = ["marts.fct_outreach", "marts.fct_calls", "marts.fct_applications",
         "marts.fct_enrollment_outcomes", "marts.dim_person", "reports.outcomes"]
WORKTREE = Path(__file__).resolve().parents[1]


# -- helpers ----------------------------------------------------------------------------------------

@contextlib.contextmanager
def _environ():
    """``build_definitions`` exports the dbt profile's variables: put the environment back."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _new_home(base: Path, generated: Settings) -> Path:
    """A home with a copy of the generated inbox folder and case-management database."""
    base.mkdir(parents=True)
    shutil.copytree(generated.inbox, base / "inbox", copy_function=shutil.copy2)
    shutil.copy2(generated.casemgmt_sqlite_path, base / "casemgmt.sqlite")
    return base


def _ingest(settings: Settings):
    """``bdt ingest`` in-process: (result, the lines it printed)."""
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions
    from bdt_platform.inbox.ingest import ingest

    with _environ():
        defs = build_definitions(settings)
        instance = instance_for(settings)
        lines: list[str] = []
        try:
            resources = defs.resources
            result = ingest(defs, instance, resources["inbox"], resources["lake"],
                            resources["warehouse"], resources["casemgmt"], settle_seconds=0,
                            echo=lines.append)
        finally:
            instance.dispose()
    return result, lines


def _rows(settings: Settings, tables: list[str]) -> dict[str, list[tuple]]:
    """Every row of each table (sorted; a missing table: None), read from the DuckDB file."""
    import duckdb

    found = {}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table in tables:
            schema, name = table.split(".")
            exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE "
                                 "table_schema = ? AND table_name = ?", [schema, name]).fetchone()
            found[table] = (sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
                            if exists[0] else None)
    return found


def _raw(settings: Settings) -> dict[str, list[tuple]]:
    return _rows(settings, [f"raw.{t}" for t in FEEDS + CASEMGMT])


def _archive(lake: Path) -> list[str]:
    """The lake's archive, each file checked whole: its size and checksum are the ones its
    name says (``<arrival>_<sha256[:12]>_<file>``), and no temporary copy is left beside it."""
    names = []
    for path in sorted((lake / "archive").rglob("*")):
        if path.is_dir():
            continue
        assert not path.name.startswith("."), f"a partial copy left in the lake: {path}"
        _, digest, _ = path.name.split("_", 2)
        assert hashlib.sha256(path.read_bytes()).hexdigest()[:12] == digest, \
            f"a partial file in the lake: {path} ({path.stat().st_size} bytes)"
        names.append(str(path.relative_to(lake)))
    return names


def _inbox_files(inbox: Path) -> list[str]:
    """Files waiting in an inbox folder (not under processed/)."""
    return sorted(str(p.relative_to(inbox)) for p in inbox.rglob("*")
                  if p.is_file() and p.relative_to(inbox).parts[0] != "processed")


def _processed(inbox: Path) -> list[str]:
    return sorted(str(p.relative_to(inbox / "processed")) for p in (inbox / "processed").rglob("*")
                  if p.is_file())


def _feed_of(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.split("_", 3)[3].split(".")[0]


def _each_feed_landed_whole_or_not_at_all(result, raw, reference, inbox: Path) -> set[str]:
    """After a failed ingest: per feed, either its partition holds exactly the reference rows
    and its files moved to processed/, or the feed holds none of them and its files wait in
    the inbox, each reported failed. The feeds that failed."""
    status = {f.path: f for f in result.files}
    failed = set()
    waiting, processed = _inbox_files(inbox), _processed(inbox)
    for feed in FEEDS:
        files = [p for p in reference["files"] if _feed_of(p) == feed]
        if raw[f"raw.{feed}"]:
            assert raw[f"raw.{feed}"] == reference["raw"][f"raw.{feed}"], feed
            assert all(p in processed and p not in waiting for p in files), feed
            assert all(status[p].status == "loaded" for p in files), feed
        else:
            failed.add(feed)
            assert all(p in waiting and p not in processed for p in files), feed
            assert all(status[p].status == "failed" for p in files), (feed, status)
    return failed


def _runs(settings: Settings, job: str) -> dict[str, dg.DagsterRunStatus]:
    """Run id -> status of every run of ``job`` in the instance, oldest first."""
    from bdt_platform.core.runs import instance_for

    with _environ():
        instance = instance_for(settings)
        try:
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=job))
            return {run.run_id: run.status for run in reversed(runs)}
        finally:
            instance.dispose()


# -- what an uninterrupted run gives ----------------------------------------------------------------

@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("faults") / "generated")
    generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=[STATE],
             months=[MONTH], scale=SCALE, seed=SEED, pii_key=TEST_PII_KEY)
    return settings


@pytest.fixture(scope="module")
def reference(tmp_path_factory, generated) -> dict:
    """The same files ingested and built without a fault."""
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions
    from bdt_platform.warehouse.build import build

    settings = make_settings(_new_home(tmp_path_factory.mktemp("reference") / "home",
                                       generated))
    files = _inbox_files(Path(settings.inbox))
    ingested, _ = _ingest(settings)
    assert ingested.exit_code == 0
    with _environ():
        defs = build_definitions(settings)
        instance = instance_for(settings)
        try:
            built = build(defs, instance, defs.resources["warehouse"], echo=lambda _: None,
                          tool_log=settings.home / "dbt.log")
        finally:
            instance.dispose()
    assert built.exit_code == 0
    raw, marts = _raw(settings), _rows(settings, MARTS)
    assert all(raw.values()) and all(marts.values())
    return {"files": files, "raw": raw, "marts": marts,
            "archive": _archive(Path(settings.lake))}


# -- 1. the SFTP server killed mid-transfer -----------------------------------------------------------

def test_sftp_server_killed_mid_transfer_loads_nothing_partial_and_the_rerun_converges(
        tmp_path, generated, reference, monkeypatch):
    # A lost server is retried 3 times (5, 10, 20 s apart in the product): cut to a blink.
    monkeypatch.setattr(retries, "FIRST_WAIT_SECONDS", 0.05)
    work = tmp_path / "sftp"
    (work / "root").mkdir(parents=True)
    shutil.copytree(generated.inbox, work / "root" / "inbox", copy_function=shutil.copy2)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(generated.casemgmt_sqlite_path, home / "casemgmt.sqlite")
    served_inbox = work / "root" / "inbox"

    # The server SIGKILLs itself once it has served 10 kB of the files' 23 kB: some files
    # were read whole, the one being read then is never answered.
    with faulty_server_process(work, die_after_bytes=10_000) as (server, process):
        settings = make_settings(home, BDT_INBOX=server.url("/inbox"),
                                 BDT_SFTP_KEY=str(server.client_key_file),
                                 BDT_SFTP_KNOWN_HOSTS=str(server.known_hosts_file))
        first, lines = _ingest(settings)
        assert process.wait(timeout=10) == -signal.SIGKILL
    port = int(server.base_url.rsplit(":", 1)[1])
    assert first.exit_code == 1
    failed = _each_feed_landed_whole_or_not_at_all(first, _raw(settings), reference,
                                                   served_inbox)
    assert failed  # the server died before it had served every feed
    for result in first.files:
        if result.status == "failed":  # the line names the file and the server
            assert f"bdt@127.0.0.1:{port}" in result.detail, result.detail
            assert any(line.startswith("failed") and result.path in line for line in lines)

    # The same server again (same port, keys and files): the next ingest lands the rest.
    with server_process(work, port=port):
        second, lines = _ingest(settings)
    assert second.exit_code == 0, lines
    assert _raw(settings) == reference["raw"]  # every row once
    assert _inbox_files(served_inbox) == [] and _processed(served_inbox) == reference["files"]
    assert _archive(Path(settings.lake)) == reference["archive"]


# -- 4. a full disk under the lake --------------------------------------------------------------------

@contextlib.contextmanager
def _tmpfs(folder: Path, size: str):
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the lake (needs root or CAP_SYS_ADMIN): "
                    f"{mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_lake_fails_naming_the_path_keeps_the_files_and_the_rerun_converges(
        tmp_path, generated, reference):
    home = _new_home(tmp_path / "home", generated)
    settings = make_settings(home)
    lake, inbox = Path(settings.lake), Path(settings.inbox)
    with _tmpfs(lake, "1m"):
        # The disk is full but for 8 kB: the partner files (23 kB) do not fit.
        ballast = lake / "ballast"
        with open(ballast, "wb") as out:
            free = os.statvfs(lake).f_bavail * os.statvfs(lake).f_frsize
            out.write(b"\0" * (free - 8192))
        first, lines = _ingest(settings)
        assert first.exit_code == 1
        full = [f for f in first.files if f.status == "failed"]
        assert full, lines
        assert any("No space left on device" in f.detail and str(lake) in f.detail
                   for f in full), [f.detail for f in full]
        failed = _each_feed_landed_whole_or_not_at_all(first, _raw(settings), reference, inbox)
        assert failed
        _archive(lake)  # nothing in the lake is a part of a file

        ballast.unlink()  # the operator frees space
        second, lines = _ingest(settings)
        assert second.exit_code == 0, lines
        assert _raw(settings) == reference["raw"]
        assert _inbox_files(inbox) == [] and _processed(inbox) == reference["files"]
        assert _archive(lake) == reference["archive"]


# -- 3. kill -9 of a run mid-load and mid-build, on PostgreSQL -------------------------------------------

def _bdt(command: list[str], environ: dict[str, str], log: Path) -> subprocess.Popen:
    """``bdt <command>`` in a process group of its own (dbt's process with it)."""
    return subprocess.Popen([sys.executable, "-m", "bdt_platform.cli", *command],
                            env=environ, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"bdt ended early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out waiting:\n{log.read_text()}"
        time.sleep(0.05)


def _kill_9(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def test_bdt_killed_mid_load_and_mid_build_on_postgres_converges_on_the_next_run(
        tmp_path, generated, reference, postgres_server):  # noqa: F811
    work = tmp_path / "sftp"
    (work / "root").mkdir(parents=True)
    shutil.copytree(generated.inbox, work / "root" / "inbox", copy_function=shutil.copy2)
    served_inbox = work / "root" / "inbox"
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(generated.casemgmt_sqlite_path, home / "casemgmt.sqlite")
    progress = tmp_path / "served"
    settings = make_settings(home, BDT_DAGSTER_PG_URL=postgres_server.url)
    # The session's PostgreSQL may hold other tests' runs: only the runs made here count.
    before = {*_runs(settings, "ingest_feeds"), *_runs(settings, "build_warehouse")}

    def statuses(job: str) -> list[dg.DagsterRunStatus]:
        return [status for run, status in _runs(settings, job).items() if run not in before]

    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("BDT_", "DAGSTER_"))}
    environ.update({"BDT_HOME": str(home), "BDT_PII_KEY": TEST_PII_KEY,
                    "DAGSTER_HOME": str(home / "dagster"),
                    "BDT_DAGSTER_PG_URL": postgres_server.url,
                    "PYTHONPATH": os.pathsep.join([str(WORKTREE),
                                                   os.environ.get("PYTHONPATH", "")])})

    # Mid-load: the partner server is slow (4 kB/s); bdt ingest is killed once the load step
    # has begun reading the files.
    with faulty_server_process(work, bytes_per_second=4000, progress=progress) as (server, _):
        environ.update({"BDT_INBOX": server.url("/inbox"),
                        "BDT_SFTP_KEY": str(server.client_key_file),
                        "BDT_SFTP_KNOWN_HOSTS": str(server.known_hosts_file)})
        log = tmp_path / "ingest-killed.log"
        killed = _bdt(["ingest", "--settle", "0"], environ, log)
        _wait_for(progress.exists, killed, log)
        _kill_9(killed)
    port = int(server.base_url.rsplit(":", 1)[1])
    assert statuses("ingest_feeds") == [dg.DagsterRunStatus.STARTED]
    assert all(not rows for rows in _raw(settings).values())
    assert _inbox_files(served_inbox) == reference["files"]  # nothing moved to processed/

    # The server back (same port, keys and files; the build pushes the mail list to it too).
    with server_process(work, port=port):
        log = tmp_path / "ingest-again.log"
        again = _bdt(["ingest", "--settle", "0"], environ, log)
        assert again.wait(timeout=120) == 0, log.read_text()
        out = log.read_text()
        assert "was left started by a process that is gone" in out, out
        assert statuses("ingest_feeds")[0] == dg.DagsterRunStatus.FAILURE
        assert _raw(settings) == reference["raw"]
        assert _processed(served_inbox) == reference["files"]

        # Mid-build: bdt build (and its dbt) killed once dbt has built a model.
        log = tmp_path / "build-killed.log"
        killed = _bdt(["build"], environ, log)
        logs = home / "logs"
        _wait_for(lambda: any("OK created" in p.read_text(errors="replace")
                              for p in logs.glob("dbt-*.log")), killed, log)
        _kill_9(killed)
        assert statuses("build_warehouse") == [dg.DagsterRunStatus.STARTED]
        log = tmp_path / "build-again.log"
        again = _bdt(["build"], environ, log)
        assert again.wait(timeout=180) == 0, log.read_text()
        assert "was left started by a process that is gone" in log.read_text()
        built = statuses("build_warehouse")
        assert built[0] == dg.DagsterRunStatus.FAILURE and built[-1] == dg.DagsterRunStatus.SUCCESS
        assert _rows(settings, MARTS) == reference["marts"]
        assert _raw(settings) == reference["raw"]


def test_only_runs_whose_process_is_gone_are_marked_failed(platform):
    """The cleanup that lets the next command run: a run whose process is alive, on another
    host, or whose pid now belongs to a newer process is judged by the identity it carries."""
    import socket
    import uuid

    from dagster._core.storage.dagster_run import DagsterRun

    from bdt_platform.core import pools

    _, _, instance = platform
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    try:
        identities = {
            "alive": f"{host}:{sleeper.pid}:{pools._start_time(sleeper.pid)}",
            "gone": f"{host}:{dead.pid}:{pools._start_time(os.getpid())}",
            "reused pid": f"{host}:{sleeper.pid}:1",  # the pid, another process's start time
            "other host": f"not-{host}:{dead.pid}:1",
        }
        runs = {}
        for what, identity in identities.items():
            run = DagsterRun(job_name="ingest_feeds", run_id=str(uuid.uuid4()),
                             status=dg.DagsterRunStatus.STARTED,
                             tags={pools.PROCESS_TAG: identity})
            instance.add_run(run)
            runs[run.run_id] = what
        failed = pools.fail_runs_whose_process_died(instance)
        assert sorted(runs[run.run_id] for run in failed) == ["gone", "reused pid"]
        status = {what: instance.get_run_by_id(run_id).status for run_id, what in runs.items()}
        assert status == {"alive": dg.DagsterRunStatus.STARTED,
                          "gone": dg.DagsterRunStatus.FAILURE,
                          "reused pid": dg.DagsterRunStatus.FAILURE,
                          "other host": dg.DagsterRunStatus.STARTED}
        [message] = [e.dagster_event.message for e in instance.all_logs(failed[0].run_id)
                     if e.dagster_event
                     and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE]
        assert "is gone" in message and "pid" in message
    finally:
        sleeper.kill()
        sleeper.wait()
