"""What ``bdt demo`` prints at the end: where everything is and what the numbers say."""

from __future__ import annotations

from collections.abc import Callable

from bdt_platform.core.settings import Settings
from bdt_platform.storage.warehouse import Warehouse


def table_counts(warehouse: Warehouse) -> list[tuple[str, int]]:
    tables = warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw', 'staging', 'intermediate', 'marts', 'reports', 'outreach', "
        "'ml') ORDER BY CASE table_schema WHEN 'raw' THEN 1 WHEN 'staging' THEN 2 "
        "WHEN 'intermediate' THEN 3 WHEN 'marts' THEN 4 WHEN 'ml' THEN 5 WHEN 'outreach' THEN 6 "
        "ELSE 7 END, table_name")
    counts = []
    for row in tables.itertuples():
        name = f"{row.table_schema}.{row.table_name}"
        counts.append((name, int(warehouse.query(f"SELECT count(*) AS n FROM {name}")["n"].iloc[0])))
    return counts


def outreach_summary(warehouse: Warehouse) -> list[str]:
    """The month's lists, the model in force and the campaigns' primary lifts, in a few lines."""
    lines: list[str] = []
    if warehouse.table_exists("outreach.mail_list"):
        lists = warehouse.query(
            "SELECT count(*) AS pieces, count(DISTINCT state || CAST(month AS VARCHAR)) AS lists, "
            "sum(CASE WHEN arm = 'random_control' THEN 1 ELSE 0 END) AS control "
            "FROM outreach.mail_list").iloc[0]
        lines += ["", f"Outreach: {int(lists.pieces):,} mail pieces on {int(lists.lists)} "
                      f"state x month list(s), {int(lists.control or 0):,} of them the random "
                      "control (outreach.mail_list)"]
    if warehouse.table_exists("ml.model_versions"):
        versions = warehouse.query("SELECT model_version, auc, top_decile_lift, brier, promoted "
                                   "FROM ml.model_versions ORDER BY scored_month")
        for row in versions.itertuples():
            verdict = "promoted" if row.promoted else "not promoted"
            lines.append(f"  model {row.model_version}: held-out AUC {row.auc:.3f}, top-decile "
                         f"lift {row.top_decile_lift:.2f}, Brier {row.brier:.4f} ({verdict})")
    if warehouse.table_exists("reports.ab_readout"):
        lifts = warehouse.query(
            "SELECT campaign_id, arm, metric, lift_vs_control, ci_low, ci_high, trustworthy "
            "FROM reports.ab_readout WHERE is_primary AND lift_vs_control IS NOT NULL "
            "ORDER BY campaign_id, arm")
        for row in lifts.itertuples():
            note = "" if row.trustworthy else " (sample ratio mismatch: not trustworthy)"
            lines.append(f"  {row.campaign_id} {row.arm}: {row.metric} "
                         f"{row.lift_vs_control:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
                         f"{note} (reports.ab_readout)")
    return lines


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
    for line in outreach_summary(warehouse):
        echo(line)
    echo("")
    echo("Open the UI on this data:  bdt ui   (or: DAGSTER_HOME="
         f"{settings.dagster_home} BDT_HOME={settings.home} dagster dev)  -> http://127.0.0.1:3000")
