"""Shared fixtures: a throwaway $BDT_HOME with its own settings, definitions and instance."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.settings import Settings, load_settings

TEST_PII_KEY = "test-pii-key-not-a-secret"

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)


def make_settings(home: Path, **extra: str) -> Settings:
    return load_settings({"BDT_HOME": str(home), "BDT_PII_KEY": TEST_PII_KEY, **extra})


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
    from bdt_platform.runs import instance_for

    defs = build_definitions(settings)
    instance = instance_for(settings)
    yield settings, defs, instance
    instance.dispose()
