"""The ``bdt`` command: generate, ingest, build, demo, explain, partners, quarantine, outreach,
prune, bench, ui and deploy-local (the subcommands with more to them have a module of their own in this
folder)."""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time
from pathlib import Path

from bdt_platform.cli import deploy_local, metrics, partners, quarantine, retention
from bdt_platform.cli import outreach as outreach_commands  # bdt outreach simulate
from bdt_platform.cli import site as site_commands  # the report site's commands
from bdt_platform.cli.common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, _definitions, _echo, _months, _quiet_dagster,
                                     _runtime, _settings, _start_up, _states)
from bdt_platform.core.settings import Settings, SettingsError

DEMO_STATES = "MA,MD,ME"  # adjacent in state order: one build run covers all three
DEMO_MONTHS = "2024-01..2024-03"


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
        from bdt_platform.core.inbox_interface import InboxUnavailable
        from bdt_platform.inbox.folder import FolderInbox
        from bdt_platform.inbox.ingest import ingest
        from bdt_platform.inbox.partners import RegistryError
        from bdt_platform.core.runs import instance_for
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
    from bdt_platform.warehouse.build import build, nothing_new

    force = getattr(args, "force", False)
    if not force:
        # Nothing new (the usual case between deliveries) is known without the definitions.
        with _start_up():
            _quiet_dagster()
            if nothing_new(settings, _states(args.states), _months(args.months), echo=_echo):
                return EXIT_OK
    with _start_up():
        defs, instance = _runtime(settings)
    tool_log = settings.home / "logs" / f"dbt-{time.strftime('%Y%m%dT%H%M%S')}.log"
    result = build(defs, instance, defs.resources["warehouse"], _states(args.states),
                   _months(args.months), echo=_echo, tool_log=tool_log,
                   force=force,
                   settings_inputs=settings.result_shaping())
    return result.exit_code


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.cli.demo import print_summary

    started = time.perf_counter()
    _echo(f"== 1/3 generate synthetic partner drops ({args.states} x {args.months}) ==")
    cmd_generate(args, settings)
    _echo("== 2/3 ingest: inbox -> lake -> raw warehouse tables ==")
    args.settle = 0.0 if args.settle is None else args.settle
    ingest_code = cmd_ingest(args, settings)
    _echo("== 3/3 build: dbt models and reports ==")
    build_args = argparse.Namespace(states=args.states, months=args.months, force=False)
    build_code = cmd_build(build_args, settings)
    defs_warehouse = _runtime(settings)[0].resources["warehouse"]
    print_summary(settings, defs_warehouse, echo=_echo)
    from bdt_platform.site import create_demo_user

    username, password = create_demo_user(settings)
    _echo(f"report site: run `bdt serve`, open {settings.site_url}/ and sign in as {username} "
          f"with password {password} (an admin; `bdt users add` makes more users)")
    _echo(f"demo finished in {time.perf_counter() - started:.0f}s")
    return max(ingest_code, build_code)


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_dagster()
    import dagster as dg

    from bdt_platform.explain.engine import ExplainError, explain, parse_when
    from bdt_platform.explain.render import to_markdown
    from bdt_platform.explain.reproduce import reproduce
    from bdt_platform.core.partitions import parse_month

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


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.bench.platform_bench import run

    return run(args)


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    """Start the Dagster UI on the same $BDT_HOME (``dagster dev`` from the repository root)."""
    from bdt_platform.core.resources import (EVENT_BATCH_SWITCH, LOCAL_EVENT_BATCH_SIZE,
                                        PLANNED_EVENTS_SWITCH)

    from bdt_platform.core.runs import instance_for

    # bdt's dagster.yaml for this home (SQLite, or PostgreSQL with BDT_DAGSTER_PG_URL, whose
    # driver form instance_for puts in the environment dagster dev inherits).
    instance_for(settings).dispose()
    batching = {EVENT_BATCH_SWITCH: LOCAL_EVENT_BATCH_SIZE} if settings.env == "local" else {}
    env = {PLANNED_EVENTS_SWITCH: "true", **batching, **os.environ,
           "DAGSTER_HOME": str(settings.dagster_home),
           "BDT_HOME": str(settings.home)}
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]  # the repository root
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
    build.add_argument("--force", action="store_true",
                       help="build every partition asked for, even those up to date (by "
                            "default a partition whose raw inputs' data versions and code did "
                            "not change since its last finished build is skipped), and compute "
                            "every person of marts.dim_person again (by default only the "
                            "people whose rows changed)")
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

    partners.add_parser(commands)

    quarantine.add_parser(commands)

    retention.add_parser(commands)  # prune: old runs' event logs

    site_commands.add_parsers(commands)  # users, serve, usage, embed: the report site

    metrics.add_parser(commands)

    outreach_commands.add_parser(commands)

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

    deploy_local.add_parser(commands)  # deploy-local: the multi-process deployment
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
