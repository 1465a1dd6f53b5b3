"""What ``bdt demo`` prints at the end: where everything is and what the numbers say."""

from __future__ import annotations

from collections.abc import Callable

from bdt_platform.core.settings import Settings
from bdt_platform.storage.warehouse import Warehouse


def table_counts(warehouse: Warehouse) -> list[tuple[str, int]]:
    tables = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'staging', 'intermediate', 'marts', 'reports') "
        "ORDER BY CASE table_schema WHEN 'raw' THEN 1 WHEN 'staging' THEN 2 "
        "WHEN 'intermediate' THEN 3 WHEN 'marts' THEN 4 ELSE 5 END, table_name")
    counts = []
    for row in tables.itertuples():
        name = f"{row.table_schema}.{row.table_name}"
        counts.append((name, int(warehouse.query(f"SELECT count(*) AS n FROM {name}")["n"].iloc[0])))
    return counts


def print_summary(settings: Settings, warehouse: Warehouse,
                  echo: Callable[[str], None] = print) -> None:
    echo("")
    echo(f"Everything lives under BDT_HOME={settings.home}:")
    echo(f"  inbox      {settings.inbox}  (landed files move to processed/)")
    echo(f"  lake       {settings.lake}  (archive/ byte-for-byte originals, quarantine/)")
    echo(f"  warehouse  {settings.warehouse_path}")
    echo(f"  dagster    {settings.dagster_home}  (runs, materializations, checks)")
    echo("")
    echo("Tables (rows):")
    for name, rows in table_counts(warehouse):
        echo(f"  {name:<52} {rows:>8,}")
    if warehouse.table_exists("reports.outcomes"):
        report = warehouse.query(
            "SELECT state, strftime(month, '%Y-%m') AS month, pieces_mailed, people_nudged, calls, "
            "applications, approvals, round(benefit_usd_monthly, 2) AS benefit_usd_monthly, "
            "round(approval_rate, 3) AS approval_rate FROM reports.outcomes ORDER BY state, month")
        totals = report[["pieces_mailed", "calls", "applications", "approvals"]].sum()
        echo("")
        echo("reports.outcomes:")
        for line in report.to_string(index=False).splitlines():
            echo(f"  {line}")
        echo("")
        decided = report["approvals"].sum()
        echo(f"Headline: {int(totals.pieces_mailed):,} pieces mailed -> {int(totals.calls):,} calls "
             f"-> {int(totals.applications):,} applications -> {int(decided):,} approvals, "
             f"${report['benefit_usd_monthly'].sum():,.2f} a month in benefits.")
    echo("")
    echo("Open the UI on this data:  bdt ui   (or: DAGSTER_HOME="
         f"{settings.dagster_home} BDT_HOME={settings.home} dagster dev)  -> http://127.0.0.1:3000")
