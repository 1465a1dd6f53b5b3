"""``bdt outreach simulate``: what a pieces budget would buy, per state, before it is spent."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bdt_platform.cli.common import EXIT_OK, _echo, _quiet_dagster, _refuse, _table
from bdt_platform.core.settings import Settings

FORMATS = ("table", "csv", "json")
SPLIT_CHOICES = ("current", "proportional", "ranked", "all")
COLUMNS = ["month", "split", "state", "allocated", "pool", "pieces", "expected_applied",
           "applied_low", "applied_high", "expected_approved", "approved_low", "approved_high"]

DESCRIPTION = """\
Forecast, for a total budget of mail pieces split across states, how many people on the lists
would apply within the model's label window (model.label_days) and how many would be approved,
each with a 95% interval. Reads the built warehouse: the people the mail-list rules keep before
the budget cut, the response model's scores (the version in force for the month, checked on its
held-out month), and the approval rate of the lists of earlier months.

Splits: current (each state's configured mail.budget, scaled to the total), proportional (to
the people the rules keep in each state), ranked (one national list by score, best first), or
all three. Within a state the pieces go as on the mail list: the mail.control_share lottery,
then by rank. Exit 2 for a bad budget, state or month, or before `bdt build` has scored a month.
"""


def _budget(text: str) -> int | None:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _warehouse_and_lake(settings: Settings):
    from bdt_platform.core.resources import build_resources

    resources = build_resources(settings, dbt=False)
    return resources["warehouse"], resources["lake"]


def _number(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(row: dict, name: str) -> str:
    low, high = row[f"{name}_low"], row[f"{name}_high"]
    if isinstance(low, float) and math.isnan(low):
        return "n/a"
    return f"{_number(row[f'expected_{name}'])} [{int(low)}, {int(high)}]"


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.core import partitions as parts

    budget = _budget(args.budget)
    if budget is None:
        return _refuse("outreach simulate", f"--budget must be a whole number of pieces, 0 or "
                       f"more, got {args.budget!r}")
    try:
        states = parts.parse_states(args.states) if args.states else None
        month = parts.parse_month(args.month) if args.month else None
    except ValueError as exc:
        return _refuse("outreach simulate", exc)
    _quiet_dagster()
    from bdt_platform.outreach import forecast_inputs as inputs
    from bdt_platform.outreach import simulate
    from bdt_platform.outreach.config import OutreachConfigError, load_config
    from bdt_platform.storage.warehouse import WarehouseBusy

    try:
        config = load_config(settings.outreach_config)
    except OutreachConfigError as exc:
        return _refuse("outreach simulate", exc)
    if settings.env != "prod" and not Path(settings.warehouse_path).exists():
        return _refuse("outreach simulate", f"no warehouse at {settings.warehouse_path} yet; "
                       "run `bdt build`")
    warehouse, lake = _warehouse_and_lake(settings)
    try:
        scored = inputs.scored_months(warehouse)
        if not scored:
            return _refuse("outreach simulate", "no month has the response model's scores yet; "
                           "run `bdt build` (a model needs two months with closed label windows)")
        month = month or scored[-1]
        if month not in scored:
            return _refuse("outreach simulate", f"{month:%Y-%m} has no scores (scored months: "
                           f"{', '.join(f'{m:%Y-%m}' for m in scored)}); run `bdt build`")
        available = inputs.scored_states(warehouse, month)
        if states is None:
            states = available
        missing = [s for s in states if s not in available]
        if missing:
            return _refuse("outreach simulate", f"no scores for {', '.join(missing)} in "
                           f"{month:%Y-%m} (scored: {', '.join(available)})")
        pools = inputs.pools(warehouse, month, states, config)
        version = inputs.version_in_force(warehouse, month)
        calibration = inputs.held_out_calibration(warehouse, lake, version, config)
        rate = inputs.approval_rate(inputs.list_outcomes(warehouse, config.label_days), month)
    except (inputs.NoForecast, WarehouseBusy) as exc:
        return _refuse("outreach simulate", exc)
    splits = simulate.SPLITS if args.split == "all" else (args.split,)
    configured = {state: config.budget(state, month) for state in states}
    rows = []
    for split in splits:
        table, _ = simulate.simulate(pools, budget, split, control_share=config.control_share,
                                     rate=rate, calibration=calibration,
                                     configured=configured)
        table.insert(0, "month", f"{month:%Y-%m}")
        rows.extend(table[COLUMNS].to_dict(orient="records"))
    _print(args.format, rows, {
        "month": f"{month:%Y-%m}", "budget": budget, "states": states,
        "model_version": version["model_version"], "label_days": config.label_days,
        "approval_rate": None if math.isnan(rate.rate) else rate.rate,
        "approval_basis": {"approved": rate.approved, "applied": rate.applied},
        "calibration": {"test_month": f"{version['test_month']:%Y-%m}",
                        "observed": calibration.observed,
                        "expected": round(calibration.expected, 3),
                        "corrected": calibration.biased}})
    return EXIT_OK


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _print(form: str, rows: list[dict], context: dict) -> None:
    if form == "json":
        _echo(json.dumps({**context, "rows": [{k: _plain(v) for k, v in r.items()}
                                              for r in rows]}, indent=2))
        return
    if form == "csv":
        import pandas as pd

        _echo(pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False).rstrip("\n"))
        return
    calibration = context["calibration"]
    rate = context["approval_rate"]
    _echo(f"simulating {context['budget']:,} piece(s) in {context['month']} across "
          f"{len(context['states'])} state(s) with {context['model_version']}")
    _echo(f"  applied: within {context['label_days']} days of the mailing; approval rate "
          + (f"{rate:.3f} ({context['approval_basis']['approved']} of "
             f"{context['approval_basis']['applied']} applicants on earlier lists)"
             if rate is not None else "unknown (no applicant on earlier lists)"))
    _echo(f"  calibration on {calibration['test_month']} (held out): {calibration['observed']} "
          f"applied vs {calibration['expected']:.1f} expected: "
          + ("scores corrected" if calibration["corrected"] else "no correction needed"))
    cells = [(r["split"], r["state"], str(r["allocated"]), str(r["pool"]), str(r["pieces"]),
              _interval(r, "applied"), _interval(r, "approved")) for r in rows]
    for line in _table(cells, ("split", "state", "budget", "pool", "pieces",
                               "applied [95%]", "approved [95%]")):
        _echo(line)
    for r in rows:
        if r["state"] == "ALL" and r["pieces"] < r["allocated"]:
            _echo(f"{r['split']}: {r['allocated'] - r['pieces']:,} piece(s) unspent (more "
                  "than the pools hold)")


def add_parser(commands) -> None:
    outreach = commands.add_parser(
        "outreach", help="outreach planning: what a mail budget would buy (simulate)",
        description="Outreach planning on the built warehouse.")
    sub = outreach.add_subparsers(dest="outreach_command", required=True, metavar="SUBCOMMAND")
    simulate = sub.add_parser(
        "simulate", help="expected applications and approvals per state for a pieces budget",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: bdt outreach simulate --budget 600 --states MA,MD,ME --month 2024-03 "
        "--split all")
    simulate.add_argument("--budget", required=True, metavar="N",
                          help="total mail pieces to spend (0 or more)")
    simulate.add_argument("--states", metavar="PA,NJ",
                          help="states to split the budget across (default: every state scored "
                          "that month)")
    simulate.add_argument("--month", metavar="YYYY-MM",
                          help="the month to mail (default: the latest scored month)")
    simulate.add_argument("--split", choices=SPLIT_CHOICES, default="current",
                          help="how the budget is split across states (default current)")
    simulate.add_argument("--format", choices=FORMATS, default="table")
    simulate.set_defaults(handler=cmd_simulate)
