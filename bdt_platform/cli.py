"""The ``bdt`` command: generate, ingest, build, demo, partners, quarantine and ui
(interfaces.md)."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bdt_platform.settings import Settings, SettingsError, load_settings

DEMO_STATES = "MA,MD,ME"  # adjacent in state order: one build run covers all three
DEMO_MONTHS = "2024-01..2024-03"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _echo(message: str) -> None:
    print(message, flush=True)


def _settings() -> Settings:
    return load_settings()


def _quiet_dagster() -> None:
    """Silence Dagster's beta/preview notices before the asset modules (which trigger them) load."""
    from bdt_platform.runs import quiet_warnings

    quiet_warnings()


def _definitions(settings: Settings, feeds_only: bool = False):
    """Import Dagster and the definitions only for commands that run assets (slow imports);
    ``feeds_only``: the feed assets and their job alone, without importing dbt."""
    _quiet_dagster()
    os.environ.setdefault("DAGSTER_HOME", str(settings.dagster_home))
    if feeds_only:
        from bdt_platform.feed_definitions import build_feed_definitions

        return build_feed_definitions(settings)
    from bdt_platform.definitions import build_definitions

    return build_definitions(settings)


def _runtime(settings: Settings, feeds_only: bool = False):
    """The definitions (``_definitions``) and the Dagster instance."""
    from bdt_platform.runs import instance_for

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
    from bdt_platform.partitions import parse_states

    try:
        return parse_states(spec) if spec else None
    except ValueError as exc:
        raise SettingsError(f"--states: {exc}") from None


def _months(spec: str | None):
    from bdt_platform.partitions import month_range

    try:
        return month_range(spec) if spec else None
    except ValueError as exc:
        raise SettingsError(f"--months: {exc}") from None


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.synthetic import generate

    if settings.casemgmt_sqlite_path is None:
        raise SettingsError("bdt generate writes a SQLite case-management database; "
                            "BDT_CASEMGMT_URL points elsewhere")
    inbox = Path(settings.inbox)
    if settings.inbox.startswith("sftp://"):
        raise SettingsError("bdt generate writes to a local inbox folder; BDT_INBOX is sftp://")
    states, months = _states(args.states), _months(args.months)
    started = time.perf_counter()
    summary = generate(inbox, settings.casemgmt_sqlite_path, states=states, months=months,
                       scale=args.scale, seed=args.seed, pii_key=settings.pii_key,
                       progress=lambda message: _echo(f"  {message}"))
    rows = ", ".join(f"{name} {count:,}" for name, count in summary.rows.items())
    _echo(f"generated {len(summary.files)} file(s) in {inbox} and the case-management database "
          f"{settings.casemgmt_sqlite_path} in {time.perf_counter() - started:.1f}s ({rows})")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.feeds.workers import start_server_early

    start_server_early()  # the workers' imports overlap Dagster's below
    with _start_up():
        _quiet_dagster()
        from bdt_platform.feeds import prefetch
        from bdt_platform.inbox.base import InboxUnavailable
        from bdt_platform.inbox.folder import FolderInbox
        from bdt_platform.inbox.ingest import ingest
        from bdt_platform.inbox.partners import RegistryError
        from bdt_platform.runs import instance_for
    try:
        with _start_up():
            defs = _definitions(settings, feeds_only=True)
            inbox = defs.resources["inbox"]
            _echo(f"ingesting from {inbox.describe()}")
            # The workers read the files ahead of the run, from while it starts.
            ahead = (prefetch.start(inbox, settings.pii_key)
                     if isinstance(inbox, FolderInbox) else None)
            if ahead is not None:
                _echo(f"reading the inbox ahead of the run in {ahead.runner.processes} "
                      "worker process(es)")
            instance = instance_for(settings)
        resources = defs.resources
        result = ingest(defs, instance, inbox, resources["lake"], resources["warehouse"],
                        resources["casemgmt"], settle_seconds=args.settle, echo=_echo)
        if ahead is not None:
            _echo(f"read ahead: {ahead.taken} of {ahead.sent} file(s) used by the run")
    except InboxUnavailable as exc:
        _echo(f"bdt ingest: inbox unavailable: {exc}")
        return EXIT_USAGE
    except RegistryError as exc:
        print(f"bdt ingest: partner registry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        prefetch.stop()
    loaded = sum(1 for f in result.files if f.status == "loaded")
    quarantined = sum(1 for f in result.files if f.status == "quarantined")
    if not result.files and not result.casemgmt:
        _echo("nothing new in the inbox")
    _echo(f"ingest: {loaded} file(s) loaded, {quarantined} quarantined, {len(result.runs)} run(s)")
    return result.exit_code


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.warehouse.build import build

    with _start_up():
        defs, instance = _runtime(settings)
    tool_log = settings.home / "logs" / f"dbt-{time.strftime('%Y%m%dT%H%M%S')}.log"
    result = build(defs, instance, defs.resources["warehouse"], _states(args.states),
                   _months(args.months), echo=_echo, tool_log=tool_log)
    return result.exit_code


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.demo import print_summary

    started = time.perf_counter()
    _echo(f"== 1/3 generate synthetic partner drops ({args.states} x {args.months}) ==")
    cmd_generate(args, settings)
    _echo("== 2/3 ingest: inbox -> lake -> raw warehouse tables ==")
    args.settle = 0.0 if args.settle is None else args.settle
    ingest_code = cmd_ingest(args, settings)
    _echo("== 3/3 build: dbt models and reports ==")
    build_args = argparse.Namespace(states=args.states, months=args.months)
    build_code = cmd_build(build_args, settings)
    defs_warehouse = _runtime(settings)[0].resources["warehouse"]
    print_summary(settings, defs_warehouse, echo=_echo)
    _echo(f"demo finished in {time.perf_counter() - started:.0f}s")
    return max(ingest_code, build_code)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_dagster()
    import dagster as dg

    from bdt_platform.explain.engine import ExplainError, explain, parse_when
    from bdt_platform.explain.render import to_markdown
    from bdt_platform.explain.reproduce import reproduce
    from bdt_platform.partitions import parse_month

    defs, instance = _runtime(settings)
    lake = defs.resources["lake"]
    try:
        month = parse_month(args.month)
        if args.as_of:
            result = reproduce(instance, defs.resolve_asset_graph(), lake, defs.resources["dbt"],
                               settings.pii_key, args.table, args.state.upper(), month,
                               parse_when(args.as_of))
            _echo(result.to_markdown())
            return EXIT_OK if result.matches else EXIT_FAILED
        explanation = explain(instance, defs.resolve_asset_graph(), lake, args.table,
                              args.state.upper(), month, metric=args.metric,
                              before=parse_when(args.before), after=parse_when(args.after))
    except (ExplainError, ValueError) as exc:
        _echo(f"bdt explain: {exc}")
        return EXIT_USAGE
    markdown = to_markdown(explanation)
    _echo(markdown)
    # Recorded on the report partition so the Dagster UI shows the same explanation.
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key=explanation.key, partition=explanation.partition,
        metadata={"explanation": dg.MetadataValue.md(markdown),
                  "compared_runs": f"{explanation.before.run_id} -> {explanation.after.run_id}"}))
    return EXIT_OK


# -- bdt partners ---------------------------------------------------------------------------------

def _refuse(command: str, message: object) -> int:
    """Bad usage or configuration: one line on stderr, exit 2."""
    print(f"bdt {command}: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def _registry_in_force(settings: Settings) -> str:
    from bdt_platform.inbox.partners import DEFAULT_REGISTRY

    if settings.partners_path.resolve() == DEFAULT_REGISTRY.resolve():
        return (f"{settings.partners_path} (the registry shipped with the project; BDT_PARTNERS "
                "is unset)")
    return f"{settings.partners_path} (BDT_PARTNERS)"


def _missing_hint(path: Path) -> str:
    return ("" if path.exists() else
            "; bdt partners add creates it from the shipped default")


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    """Left-aligned columns; the last one is not padded."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]).rstrip()
            for row in [header, *rows]]


def cmd_partners_list(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import RegistryError, load_registry

    try:
        registry = load_registry(settings.partners_path)
    except RegistryError as exc:
        return _refuse("partners list", f"{exc}{_missing_hint(settings.partners_path)}")
    _echo(f"partner registry: {_registry_in_force(settings)}")
    rows = [(p.name, ",".join(p.feeds), p.states_text, p.description) for p in registry.partners]
    for line in _table(rows, ("name", "feeds", "states", "description")):
        _echo(line)
    _echo(f"{len(rows)} partner(s)")
    return EXIT_OK


def _partner_states(spec: str | None) -> list[str] | None:
    """``--states``: None (every state) when not given or ``all``; else the codes as typed,
    upper-cased (the registry checks them)."""
    if spec is None or spec.strip().lower() == "all":
        return None
    return [code.strip().upper() for code in spec.split(",") if code.strip()]


def cmd_partners_add(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import DEFAULT_REGISTRY, RegistryError, add_partner, \
        parse_registry

    path = settings.partners_path
    feeds = list(dict.fromkeys(f.strip() for spec in args.feed for f in spec.split(",")
                               if f.strip()))
    states = _partner_states(args.states)
    source = path if path.exists() else DEFAULT_REGISTRY
    try:
        current = parse_registry(source.read_text(encoding="utf-8"), str(source))
        existing = current.get(args.name)
        if existing is not None and args.states is None:
            # Extending a partner without --states keeps its states (a state agency given
            # another feed must not start sending it for every state); --states all widens.
            states = None if existing.states is None else sorted(existing.states)
        if (path.exists() and existing is not None and set(feeds) <= set(existing.feeds)
                and (existing.states is None
                     or (states is not None and set(states) <= existing.states))
                and args.description in (None, existing.description)):
            _echo(f"partner {existing.name} is already registered for "
                  f"{','.join(existing.feeds)} in {existing.states_text}; {path} unchanged")
            return EXIT_OK
        partner, is_new = add_partner(path, args.name, feeds, states, args.description)
    except RegistryError as exc:
        return _refuse("partners add", exc)
    except OSError as exc:
        return _refuse("partners add", f"cannot write the partner registry {path}: "
                                       f"{exc.strerror or exc}")
    _echo(f"{'added' if is_new else 'extended'} partner {partner.name}: feeds "
          f"{','.join(partner.feeds)}; states {partner.states_text}")
    created = " (created from the shipped default)" if source != path else ""
    _echo(f"wrote {_registry_in_force(settings)}{created}")
    if path.resolve() == DEFAULT_REGISTRY.resolve():
        _echo("  this is the project's own registry: review the change and commit it, or set "
              "BDT_PARTNERS to a registry file of your own")
    _echo(f"its files (inbox folder {partner.name}/) load from the next bdt ingest or sensor "
          "tick; files of it already quarantined: bdt quarantine list, then bdt quarantine "
          "release FILE")
    return EXIT_OK


def cmd_partners_check(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import RegistryError, parse_registry

    path = Path(args.file) if args.file else settings.partners_path
    try:
        registry = parse_registry(path.read_text(encoding="utf-8"), str(path))
    except RegistryError as exc:
        return _refuse("partners check", exc)
    except FileNotFoundError:
        return _refuse("partners check", f"{path}: partner registry not found"
                                         f"{_missing_hint(path)}")
    except (OSError, UnicodeDecodeError) as exc:
        return _refuse("partners check", f"{path}: cannot read it: {exc}")
    _echo(f"ok: {len(registry.partners)} partners in {path}")
    return EXIT_OK


# -- bdt quarantine -------------------------------------------------------------------------------

def _lake(settings: Settings):
    _quiet_dagster()
    from bdt_platform.resources import build_resources

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
        from bdt_platform.inbox.base import InboxUnavailable
        from bdt_platform.inbox.partners import RegistryError
        from bdt_platform.inbox.quarantine import QuarantineError, release
        from bdt_platform.runs import instance_for

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


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.bench.platform_bench import run

    return run(args)


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    """Start the Dagster UI on the same $BDT_HOME (``dagster dev`` from the repository root)."""
    from bdt_platform.resources import (EVENT_BATCH_SWITCH, LOCAL_EVENT_BATCH_SIZE,
                                        PLANNED_EVENTS_SWITCH)

    batching = {EVENT_BATCH_SWITCH: LOCAL_EVENT_BATCH_SIZE} if settings.env == "local" else {}
    env = {PLANNED_EVENTS_SWITCH: "true", **batching, **os.environ,
           "DAGSTER_HOME": str(settings.dagster_home),
           "BDT_HOME": str(settings.home)}
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[1]
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster) if dagster.exists() else "dagster", "dev", "-w",
               str(root / "workspace.yaml"), "-p", str(args.port), "-h", args.host]
    _echo(f"Dagster UI on http://{args.host}:{args.port} (DAGSTER_HOME={settings.dagster_home})")
    return subprocess.call(command, env=env, cwd=root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bdt",
        description="bdt-platform: partner feeds -> lake -> warehouse (dbt) -> reports, on Dagster. "
                    "Settings come from the environment: BDT_ENV, BDT_HOME, BDT_INBOX, BDT_PII_KEY "
                    "(see README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def scope(sub: argparse.ArgumentParser, states: str | None, months: str | None) -> None:
        sub.add_argument("--states", default=states,
                         help=f"comma-separated state codes, or ALL (default: {states or 'all with data'})")
        sub.add_argument("--months", default=months,
                         help=f"YYYY-MM or YYYY-MM..YYYY-MM inclusive (default: {months or 'all with data'})")

    def synthetic(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--scale", type=float, default=1.0,
                         help="rows multiplier; 1.0 is about 300 eligible people per state-month")
        sub.add_argument("--seed", type=int, default=42, help="same seed, same bytes (default 42)")

    generate = commands.add_parser("generate", help="write synthetic, contract-true partner drops "
                                   "and the case-management database")
    scope(generate, DEMO_STATES, DEMO_MONTHS)
    synthetic(generate)
    generate.set_defaults(handler=cmd_generate)

    ingest = commands.add_parser("ingest", help="land every complete new inbox file now "
                                 "(exit 0 all loaded, 1 some quarantined, 2 bad configuration)")
    ingest.add_argument("--settle", type=float, default=2.0,
                        help="seconds a file must be unchanged to count as complete without a "
                             ".done marker (default 2)")
    ingest.set_defaults(handler=cmd_ingest)

    build = commands.add_parser("build", help="materialize dbt models and reports for partitions "
                                "(default: every partition with raw data), in one run per rectangle")
    scope(build, None, None)
    build.set_defaults(handler=cmd_build)

    demo = commands.add_parser("demo", help="generate + ingest + build a small scope and show "
                               "where everything is")
    scope(demo, DEMO_STATES, DEMO_MONTHS)
    synthetic(demo)
    demo.add_argument("--settle", type=float, default=None, help=argparse.SUPPRESS)
    demo.set_defaults(handler=cmd_demo)

    explain = commands.add_parser(
        "explain", help="why a report number changed between two materializations "
        "(or --as-of: rebuild a past number from the lake's archive)",
        description="Compare the last two materializations of a report partition (or those "
        "around --before/--after) and print each metric before -> after, the upstream inputs that "
        "changed in between (files, checksums, row counts, code versions, rejected files) and the "
        "records that entered or left each changed count, grouped by cause. Exit 2 for an unknown "
        "table or partition, or fewer than two materializations.")
    explain.add_argument("table", help="report table, e.g. reports.outcomes (or its asset key)")
    explain.add_argument("--state", required=True, help="state code, e.g. PA")
    explain.add_argument("--month", required=True, help="YYYY-MM")
    explain.add_argument("--metric", help="explain only this metric (default: every changed one)")
    explain.add_argument("--before", help="compare from the last materialization at or before "
                         "this time (ISO 8601; UTC when no offset)")
    explain.add_argument("--after", help="compare to the last materialization at or before this "
                         "time (default: the latest)")
    explain.add_argument("--as-of", dest="as_of", help="rebuild the partition as it was at this "
                         "time from the archived files and check it equals the number recorded then")
    explain.set_defaults(handler=cmd_explain)

    partners = commands.add_parser(
        "partners", help="show, extend and validate the partner registry (who may send which "
        "feed for which states)",
        description="The partner registry in force: BDT_PARTNERS, or the registry shipped with "
        "the project when it is unset. A file from a partner, feed or state it does not list is "
        "quarantined. Exit 2 for an invalid name, feed, state or registry (the registry is then "
        "left as it was).")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True,
                                               metavar="SUBCOMMAND")
    partners_list = partner_commands.add_parser(
        "list", help="the registry in force and its partners",
        description="Print the registry file in force, then one line per partner: name, feeds, "
        "states (or all) and description.")
    partners_list.set_defaults(handler=cmd_partners_list)
    partners_add = partner_commands.add_parser(
        "add", help="register a partner, or extend one (writes the registry in force)",
        description="Register NAME for the feeds and states given, in the registry in force "
        "(BDT_PARTNERS, created from the shipped default when the file does not exist yet; "
        "unset: the project's own registry file). A partner already registered is extended: "
        "the feeds and states given are added to its own (without --states it keeps its "
        "states). The file is validated before it is "
        "replaced, so a refused change leaves it as it was.",
        epilog="example: bdt partners add njhealth --feed eligibility --feed outcomes "
        "--states NJ --description 'NJ Dept. of Health (contact: data@nj.example)'")
    partners_add.add_argument("name", metavar="NAME", help="lower-case letters and digits: its "
                              "inbox folder and the first part of its file names")
    partners_add.add_argument("--feed", action="append", required=True, metavar="FEED",
                              help="a feed it may send: eligibility, outcomes, mailreturns or "
                              "nudges (repeat, or comma-separate, for several)")
    partners_add.add_argument("--states", metavar="PA,NJ",
                              help="the states it may send for, or all (default: all states "
                              "for a new partner; a partner already registered keeps its own)")
    partners_add.add_argument("--description", metavar="TEXT",
                              help="who they are and who to call (kept when not given)")
    partners_add.set_defaults(handler=cmd_partners_add)
    partners_check = partner_commands.add_parser(
        "check", help="validate a registry file (default: the one in force)",
        description="Read FILE (default: the registry in force) and print 'ok: N partners', or "
        "the first rule it breaks with its file and line (exit 2).")
    partners_check.add_argument("file", nargs="?", metavar="FILE",
                                help="a registry file (default: BDT_PARTNERS or the shipped one)")
    partners_check.set_defaults(handler=cmd_partners_check)

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

    from bdt_platform.bench.platform_bench import __doc__ as bench_doc, add_arguments

    bench = commands.add_parser("bench", help="measure ingest, build, runs, memory, sensor and "
                                "explain against raw DuckDB/dbt in a temporary home",
                                description=bench_doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(bench)
    bench.set_defaults(handler=cmd_bench)

    ui = commands.add_parser("ui", help="start the Dagster UI (dagster dev) on this $BDT_HOME")
    ui.add_argument("--port", type=int, default=3000)
    ui.add_argument("--host", default="127.0.0.1")
    ui.set_defaults(handler=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # The benchmark builds its own temporary home; it must not touch the user's.
        settings = None if args.handler is cmd_bench else _settings()
        return args.handler(args, settings)
    except SettingsError as exc:
        print(f"bdt {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE


def run() -> None:
    """The ``bdt`` console script: ``main``, then an exit that skips the garbage collector's
    last pass. A build or ingest of a year leaves millions of objects behind (recorded events,
    the dbt manifest, frames); Python's final collection walks them all before the process
    ends: ~2 s after a 51 x 12 build on 2 cores. Frozen, they are left to the operating system.
    Nothing is lost: bdt closes its files and database connections where it opens them, and
    logging flushes at exit. (Only for the console script: a program that calls ``main`` goes
    on living, and its garbage must stay collectable.)"""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
