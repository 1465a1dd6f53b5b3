"""``bdt prune --older-than DAYS``: shrink the Dagster event log of old runs, keeping the
provenance ``bdt explain`` reads (``ops/retention.py``)."""

from __future__ import annotations

import argparse

from bdt_platform.cli.common import EXIT_OK, _echo, _quiet_dagster, _refuse
from bdt_platform.core.settings import Settings


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_dagster()
    from bdt_platform.core.runs import instance_for
    from bdt_platform.ops.retention import RetentionError, prune

    if args.older_than < 0:
        return _refuse("prune", "--older-than must be 0 days or more")
    instance = instance_for(settings)
    try:
        result = prune(instance, args.older_than, dry_run=args.dry_run, progress=_echo)
    except RetentionError as exc:
        return _refuse("prune", exc)
    finally:
        instance.dispose()
    _echo(result.line())
    return EXIT_OK


def add_parser(commands) -> None:
    prune = commands.add_parser(
        "prune", help="delete old runs' event logs, keeping materializations and checks",
        description="For every run that ended more than DAYS days ago, delete its log lines, "
        "step and engine events and captured stdout/stderr from the Dagster instance. Kept: "
        "the runs and their tags, every materialization (with its provenance), observation and "
        "check evaluation, run status events and step failures: what bdt explain and the UI's "
        "asset history read. Run it from cron or a schedule; each run is pruned once.")
    prune.add_argument("--older-than", dest="older_than", type=float, required=True,
                       metavar="DAYS", help="prune runs that ended more than DAYS days ago")
    prune.add_argument("--dry-run", dest="dry_run", action="store_true",
                       help="count what would be deleted; delete nothing")
    prune.set_defaults(handler=cmd_prune)
