"""Shared fixtures: a throwaway $BDT_HOME with its own settings, definitions and instance."""

from __future__ import annotations

import os
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

