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
def platform(settings: Settings):
    """(settings, definitions, instance) over a fresh home."""
    from bdt_platform.definitions import build_definitions
    from bdt_platform.runs import instance_for

    defs = build_definitions(settings)
    instance = instance_for(settings)
    yield settings, defs, instance
    instance.dispose()
