"""What every ``bdt`` subcommand shares: the settings, the definitions and instance (imported
only by commands that run assets), echoing, exit codes and one-line refusals."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bdt_platform.core.settings import Settings, SettingsError, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _echo(message: str) -> None:
    print(message, flush=True)


def _settings() -> Settings:
    return load_settings()


def _quiet_dagster() -> None:
    """Silence Dagster's beta/preview notices before the asset modules (which trigger them) load."""
    from bdt_platform.core.runs import quiet_warnings

    quiet_warnings()


def _definitions(settings: Settings, feeds_only: bool = False):
    """Import Dagster and the definitions only for commands that run assets (slow imports);
    ``feeds_only``: the feed assets and their job alone, without importing dbt."""
    _quiet_dagster()
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    if feeds_only:
        from bdt_platform.feeds.definitions import build_feed_definitions

        return build_feed_definitions(settings)
    from bdt_platform.definitions import build_definitions

    return build_definitions(settings)


def _runtime(settings: Settings, feeds_only: bool = False):
    """The definitions (``_definitions``) and the Dagster instance."""
    from bdt_platform.core.runs import instance_for

    return _definitions(settings, feeds_only), instance_for(settings)


@contextmanager
def _start_up() -> Iterator[None]:
    """A command's start-up (its imports, definitions and instance) without garbage collection,
    and what it made then frozen (``gc.freeze``). Those objects live as long as the command; the
    collector's full passes walked them again and again: ~0.7 s of ``bdt ingest``'s start-up on
    2 cores, and part of every full pass of the run after it. Frozen objects are still freed
    when their last reference goes; only cycles among them wait for the process to end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _states(spec: str | None) -> list[str] | None:
    from bdt_platform.core.partitions import parse_states

    try:
        return parse_states(spec) if spec else None
    except ValueError as exc:
        raise SettingsError(f"--states: {exc}") from None


def _months(spec: str | None):
    from bdt_platform.core.partitions import month_range

    try:
        return month_range(spec) if spec else None
    except ValueError as exc:
        raise SettingsError(f"--months: {exc}") from None


def _refuse(command: str, message: object) -> int:
    """Bad usage or configuration: one line on stderr, exit 2."""
    print(f"bdt {command}: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
            for row in [header, *rows]]
