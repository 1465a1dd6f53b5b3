"""``bdt quarantine list|release``: the quarantined files and their reasons; process one again."""

from __future__ import annotations

import argparse
import datetime as dt

from bdt_platform.core.settings import Settings
from bdt_platform.cli.common import (EXIT_FAILED, EXIT_OK, _definitions, _echo, _quiet_dagster,
                                     _refuse, _start_up, _table)


def _lake(settings: Settings):
    _quiet_dagster()
    from bdt_platform.core.resources import build_resources

    return build_resources(settings, dbt=False)["lake"]


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def cmd_quarantine_list(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.quarantine import QUARANTINE, list_quarantined

    lake = _lake(settings)
    entries = list_quarantined(lake)
    if not entries:
        _echo(f"no quarantined files (in {lake.path(QUARANTINE)})")
        return EXIT_OK
    _echo(f"{len(entries)} quarantined file(s) in {lake.path(QUARANTINE)}, newest first:")
    rows = [((e.rejected_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
              if e.rejected_at else "?"), e.partner, e.feed or "-", ",".join(e.rules) or "-",
             e.lake_path, e.summary if args.full else _short(e.summary, args.width))
            for e in entries]
    for line in _table(rows, ("rejected", "partner", "feed", "rule", "file", "reason")):
        _echo(line)
    _echo("each file's full reason (rules, columns, example rows) is in <file>.reason.json; "
          "after fixing the registry or the contract: bdt quarantine release FILE")
    return EXIT_OK


def cmd_quarantine_release(args: argparse.Namespace, settings: Settings) -> int:
    with _start_up():
        _quiet_dagster()
        from bdt_platform.core.inbox_interface import InboxUnavailable
        from bdt_platform.inbox.partners import RegistryError
        from bdt_platform.inbox.quarantine import QuarantineError, release
        from bdt_platform.core.runs import instance_for

        defs = _definitions(settings, feeds_only=True)
        instance = instance_for(settings)
    resources = defs.resources
    try:
        result = release(defs, instance, resources["inbox"], resources["lake"],
                         resources["warehouse"], args.file, echo=_echo)
    except QuarantineError as exc:
        return _refuse("quarantine release", exc)
    except InboxUnavailable as exc:
        return _refuse("quarantine release", f"inbox unavailable: {exc}")
    except RegistryError as exc:
        return _refuse("quarantine release", f"partner registry: {exc}")
    finally:
        instance.dispose()
    was = result.released
    if result.status == "loaded":
        _echo(f"loaded {was.lake_path}: {result.detail} [{result.partition}]")
        if result.removed:
            _echo(f"removed {' and '.join(result.removed)} (the lake archive holds the file)")
        return EXIT_OK
    if result.status == "quarantined":
        again = result.quarantined
        _echo(f"still rejected: {again.lake_path} (new reason in lake/{again.reason_path}):")
        _echo(f"  {again.summary}")
        for failure in again.failures:
            if len(again.failures) == 1 and " ".join(
                    str(failure.get("message", "")).split()) == again.summary:
                break  # the summary said it all
            column = f" [{failure.get('column')}]" if failure.get("column") else ""
            count = f" ({failure.get('count')} row(s))" if failure.get("count") else ""
            _echo(f"  - {failure.get('rule')}{column}{count}: "
                  f"{' '.join(str(failure.get('message', '')).split())}")
        return EXIT_FAILED
    _echo(f"not released: {result.detail}; {was.lake_path} stays in quarantine")
    return EXIT_FAILED


def add_parser(commands) -> None:
    quarantine = commands.add_parser(
        "quarantine", help="the quarantined files and their reasons; process one again",
        description="Files refused at the inbox (naming contract, partner registry) or by the "
        "data contract are kept byte for byte in lake/quarantine/<partner>/ with "
        "<file>.reason.json beside them.")
    quarantine_commands = quarantine.add_subparsers(dest="quarantine_command", required=True,
                                                    metavar="SUBCOMMAND")
    quarantine_list = quarantine_commands.add_parser(
        "list", help="every quarantined file with its reason, newest first",
        description="One line per quarantined file: when it was rejected, its partner folder, "
        "feed, rule(s), lake path and reason.")
    quarantine_list.add_argument("--full", action="store_true",
                                 help="print each reason whole (default: shortened)")
    quarantine_list.add_argument("--width", type=int, default=100, help=argparse.SUPPRESS)
    quarantine_list.set_defaults(handler=cmd_quarantine_list)
    quarantine_release = quarantine_commands.add_parser(
        "release", help="process a quarantined file again (after a registry or contract change)",
        description="Put the quarantined file back into the inbox as <partner>/<original name> "
        "with its arrival time, and land it now as bdt ingest would. Loaded: the quarantine "
        "copy and its reason file are removed (the lake archive holds the file), exit 0. "
        "Rejected again: the new reason is written beside the copy and printed, exit 1. Exit 2 "
        "for an unknown or ambiguous FILE.")
    quarantine_release.add_argument(
        "file", metavar="FILE", help="its lake path as bdt quarantine list shows it "
        "(quarantine/<partner>/<file>), or its file name if only one quarantined file has it")
    quarantine_release.set_defaults(handler=cmd_quarantine_release)
