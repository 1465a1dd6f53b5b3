"""``bdt metrics list|query``: the metric definitions, and their values from the one definition."""

from __future__ import annotations

import argparse
import json
import math

from bdt_platform.cli.common import EXIT_OK, _echo, _quiet_dagster, _refuse, _table
from bdt_platform.core.settings import Settings

FORMATS = ("table", "csv", "json")


def _layer(settings: Settings):
    _quiet_dagster()
    from bdt_platform.metrics import MetricLayer

    # The read-only snapshot each build publishes: a query never waits on, or blocks, a build.
    layer = MetricLayer.for_settings(settings, snapshot=True)
    layer.ensure_snapshot(settings)
    layer.refresh()
    return layer


def cmd_metrics_list(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_dagster()
    from bdt_platform.metrics import MetricLayer

    metrics = MetricLayer.for_settings(settings, snapshot=True).metrics()
    if args.format == "json":
        _echo(json.dumps([{"name": m.name, "label": m.label, "description": m.description,
                           "kind": m.kind, "unit": m.unit, "dimensions": list(m.dimensions),
                           "higher_is_better": m.higher_is_better, "definition": m.definition}
                          for m in metrics], indent=2))
        return EXIT_OK
    rows = [(m.name, m.kind, m.unit, ",".join(m.dimensions), m.description) for m in metrics]
    if args.format == "csv":
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(["name", "kind", "unit", "dimensions", "description"])
        writer.writerows(rows)
        return EXIT_OK
    for line in _table(rows, ("name", "kind", "unit", "dimensions", "description")):
        _echo(line)
    _echo(f"{len(rows)} metric(s), defined in dbt_project/models/semantic/_metrics.yml")
    return EXIT_OK


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() else f"{value:.6g}"
    return str(value)


def cmd_metrics_query(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.metrics import MetricError

    names = [n for n in args.names.split(",") if n.strip()]
    by = [d for d in (args.by or "").split(",") if d.strip()]
    states = [s for s in args.states.split(",") if s.strip()] if args.states else None
    try:
        layer = _layer(settings)
        frame = layer.query(names, by=by, states=states, months=args.months)
    except MetricError as exc:
        return _refuse("metrics query", exc)
    except Exception as exc:  # noqa: BLE001 - no snapshot / warehouse busy: say so, exit 2
        from bdt_platform.metrics.snapshot import SnapshotMissing
        from bdt_platform.storage.warehouse import WarehouseBusy

        if isinstance(exc, (SnapshotMissing, WarehouseBusy)):
            return _refuse("metrics query", exc)
        raise
    if "month" in frame.columns:
        frame["month"] = [m.isoformat() for m in frame["month"]]
    if args.format == "json":
        records = [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in row.items()} for row in frame.to_dict(orient="records")]
        _echo(json.dumps({"metrics": names, "by": by, "rows": records}, indent=2))
    elif args.format == "csv":
        _echo(frame.map(_cell).to_csv(index=False).rstrip("\n"))
    else:
        rows = [tuple(_cell(v) for v in row) for row in frame.itertuples(index=False)]
        for line in _table(rows, tuple(frame.columns)) if rows else [
                "no rows: nothing has been built for that scope"]:
            _echo(line)
    return EXIT_OK


def add_parser(commands) -> None:
    metrics = commands.add_parser(
        "metrics", help="the metric definitions, and their values (computed from the one "
        "definition)",
        description="Metrics are defined once, in dbt's semantic layer "
        "(dbt_project/models/semantic/_metrics.yml); reports.outcomes, the report site and "
        "this command all take their numbers from those definitions (MetricFlow compiles them). "
        "Values are read from the warehouse snapshot each build publishes. Exit 2 for an "
        "unknown metric, dimension, state or month.")
    sub = metrics.add_subparsers(dest="metrics_command", required=True, metavar="SUBCOMMAND")
    listing = sub.add_parser("list", help="every metric with its kind, unit, dimensions and "
                             "description")
    listing.add_argument("--format", choices=FORMATS, default="table")
    listing.set_defaults(handler=cmd_metrics_list)
    query = sub.add_parser(
        "query", help="values of one or more metrics, grouped by state, month and/or program",
        epilog="example: bdt metrics query approvals,approval_rate --by state,month "
        "--states PA,NJ --months 2024-01..2024-03")
    query.add_argument("names", metavar="NAME[,NAME]", help="metric names (bdt metrics list)")
    query.add_argument("--by", default="state,month", metavar="state,month",
                       help="dimensions to group by: state, month, program (default state,month; "
                       "'' for one total)")
    query.add_argument("--states", metavar="PA,NJ", help="only these states (default: all)")
    query.add_argument("--months", metavar="2024-01..2024-06",
                       help="only these months, inclusive (default: all)")
    query.add_argument("--format", choices=FORMATS, default="table")
    query.set_defaults(handler=cmd_metrics_query)
