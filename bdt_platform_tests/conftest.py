"""Shared fixtures: a throwaway $BDT_HOME with its own settings, definitions and instance."""

from __future__ import annotations

import fcntl
import os
import shutil
import warnings
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core.settings import Settings, load_settings

TEST_PII_KEY = "test-pii-key-not-a-secret"

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def make_settings(home: Path, **extra: str) -> Settings:
    return load_settings({"BDT_HOME": str(home), "BDT_PII_KEY": TEST_PII_KEY, **extra})


def cli_environment(monkeypatch, home: Path, partners: Path) -> None:
    """The process environment of a ``bdt`` command run in-process (``cli.main``): only this
    home (and its Dagster instance) and the partner registry ``partners``."""
    for name in list(os.environ):
        if name.startswith(("BDT_", "DAGSTER_")):
            monkeypatch.delenv(name)
    for name, value in {"BDT_HOME": str(home), "BDT_PII_KEY": TEST_PII_KEY,
                        "DAGSTER_HOME": str(home / "dagster"),
                        "BDT_PARTNERS": str(partners)}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def sigterm_not_ignored():
    """Each test starts with SIGTERM's default action. pytest-xdist's workers ignore SIGINT,
    and Dagster copies SIGINT's handling onto SIGTERM after every in-process run it executes
    on the main thread (``core.runs.sigterm_kept`` guards bdt's own runs; tests also run jobs
    directly): without this, the children of later tests (servers, Dagster's log ``tail``s)
    would inherit an ignored SIGTERM and outlive ``terminate()``."""
    import signal

    if signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield


@pytest.fixture
def server(tmp_path):
    """A real SFTP server (asyncssh) on 127.0.0.1 for one test."""
    from bdt_platform.synthetic.sftp_server import start_server

    running = start_server(tmp_path / "sftp")
    yield running
    running.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def read_ahead():
    """Makes read-aheads (``prefetch.Prefetch``) that read in the test's own process, and
    closes them after the test, passed or failed (with them goes their folder of spilled rows,
    which a failed test would otherwise leave in the temporary folder)."""
    from bdt_platform.feeds import prefetch, workers

    made = []

    def make():
        made.append(prefetch.Prefetch(workers.ChunkRunner(0)))
        return made[-1]

    yield make
    for ahead in made:
        ahead.close()


@pytest.fixture
def platform(settings: Settings):
    """(settings, definitions, instance) over a fresh home."""
    from bdt_platform.definitions import build_definitions
    from bdt_platform.core.runs import instance_for

    defs = build_definitions(settings)
    instance = instance_for(settings)
    yield settings, defs, instance
    instance.dispose()


def ingest_and_build(defs, instance, **build_options):
    """``bdt ingest`` then ``bdt build`` in-process on the definitions' resources, as a user runs
    them: ``(ingest result, build result, the lines both printed)``."""
    from bdt_platform.inbox.ingest import ingest
    from bdt_platform.warehouse.build import build

    resources = defs.resources
    lines: list[str] = []
    ingested = ingest(defs, instance, resources["inbox"], resources["lake"],
                      resources["warehouse"], resources["casemgmt"], settle_seconds=0,
                      echo=lines.append)
    built = build(defs, instance, resources["warehouse"], echo=lines.append, **build_options)
    return ingested, built, lines


#: The `bdt demo` scope: the world several test files read (``built_demo_home``).
DEMO_STATES = ["MA", "MD", "ME"]
DEMO_MONTHS = ["2024-01", "2024-02", "2024-03"]
DEMO_SEED = 42


def _session_temp(tmp_path_factory) -> Path:
    """The session's temporary folder, one for all xdist workers (each worker's own basetemp
    is a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_demo_home(tmp_path_factory, name: str) -> Settings:
    """A home of its own holding the `bdt demo` world (``DEMO_STATES`` x ``DEMO_MONTHS``, scale
    1, seed 42) generated, ingested and built through the real pipeline (``ingest_and_build``).

    The world is built once per test session, by whichever worker asks first (the others wait
    on a file lock), and each caller gets a copy (warehouse, lake, instance, dbt state): a
    module may change its copy without touching another's. Dagster's ``dagster.yaml`` names
    its folder; ``instance_for`` writes it again for the copy's folder."""
    import datetime as dt

    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions
    from bdt_platform.synthetic import generate

    shared = _session_temp(tmp_path_factory) / "demo-world"
    shared.parent.mkdir(parents=True, exist_ok=True)
    with open(shared.parent / "demo-world.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (shared / "built").exists():
            shutil.rmtree(shared, ignore_errors=True)  # an earlier attempt that failed
            settings = make_settings(shared / "home")
            months = [dt.date.fromisoformat(f"{month}-01") for month in DEMO_MONTHS]
            generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=DEMO_STATES,
                     months=months, scale=1.0, seed=DEMO_SEED, pii_key=TEST_PII_KEY)
            defs = build_definitions(settings)
            instance = instance_for(settings)
            try:
                ingested, built, lines = ingest_and_build(defs, instance)
            finally:
                instance.dispose()
            assert ingested.exit_code == 0 and built.exit_code == 0, lines
            (shared / "built").write_text("")
    home = tmp_path_factory.mktemp(name) / "home"
    shutil.copytree(shared / "home", home, symlinks=True)
    return make_settings(home)


#: The slowest test files, slowest first, as measured by ``pytest --durations=0`` (seconds of
#: setup + call per file, summed, in a whole run on a 2-core machine of the CI's kind,
#: 2026-12-08). The suite runs on three workers (``-n 3``: a quarter of a two-worker run is
#: spent waiting on servers, schedules and child processes), one file per worker at a time
#: (``--dist loadfile``), handed out in collection order (``--no-loadscope-reorder``; xdist
#: would otherwise order files by their number of tests). Starting the longest files first
#: keeps one worker from finishing a long file alone at the end. Files not named keep their
#: order, after these.
SLOWEST_FILES = {
    "test_prod_parity.py": 198, "test_incremental_equals_full.py": 164,
    "test_build_skips_unchanged.py": 161, "test_deploy_local.py": 140,
    "test_volume_bench.py": 124, "test_explain.py": 111, "test_bench.py": 102,
    "test_retries.py": 101, "test_faults.py": 97, "test_end_to_end.py": 81,
    "test_site_app.py": 76, "test_outreach_world.py": 55, "test_postgres_instance.py": 36,
    "test_dbt_parse_state.py": 30, "test_retention.py": 33, "test_schedules.py": 29,
    "test_cli.py": 27, "test_outreach_simulation.py": 26, "test_outbox.py": 25,
    "test_definitions.py": 24, "test_metrics.py": 22, "test_ml_world.py": 21,
}


def pytest_collection_modifyitems(config, items):
    """Longest files first (``SLOWEST_FILES``); each file's tests stay together, in order."""
    items.sort(key=lambda item: -SLOWEST_FILES.get(item.path.name, 0))
