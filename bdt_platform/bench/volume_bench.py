"""``bdt bench --volume``: issue 27's goals at a real program's volume (generator scale 100), in
one run, each ratio against a baseline measured in the same run and printed beside its goal.

1. **Ingest** of the partner files of S states x M months (``--volume-states``,
   ``--volume-months``; 4 x 2 by default, ~90k partner rows per state-month at scale 100) vs
   DuckDB ``read_csv`` of the same files into one table per feed, every column as text, union by
   name (the limit: no contract, no tokens, no provenance). Goal: under 1.5x.
2. **Build**: ``bdt build`` of those partitions vs plain ``dbt build`` of the same models on a
   copy of the same raw tables. Goal: under 1.5x.
3. **Nothing new**: ``bdt build`` again; it must skip every partition and take under 2 s or at
   most 15% of the first build, whichever is larger.
4. **A new month costs a month**: in an empty home, month 1 of the first ``--history-states``
   states (1) is delivered (its partner files and case-management rows), ingested and built,
   then months 2..H (``--history-months``, 24), then month H+1: ``bdt ingest`` + ``bdt build``
   of month H+1 against those of month 1. Goal: under 1.2x.
6. **Instance growth**: the Dagster instance folder after the grid's ingests and builds, per
   partition materialization recorded (no goal; ``bdt prune`` bounds what old runs keep).

Each step is a process of its own (``python -m bdt_platform.cli``), timed by its wall clock, in
temporary homes that are removed afterwards; ``--repeat N`` measures the pairs of 1 and 2 N
times on restored homes (medians, and each ratio the median of its pairs' ratios). The
memory figures (peak flat in the file size) are the main bench's memory probe, whose sizes are
absolute generator scales: ``bdt bench --probe-scales``.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bdt_platform.bench.platform_bench import (INGEST_START_UP, NOTHING_NEW, _bdt, _env,
                                               _log_count, _paired, _read_csv_baseline,
                                               _restore, _run_child, plain_dbt_build,
                                               repeated_pairs_row, table)
from bdt_platform.core.settings import load_settings

VOLUME_GOALS = {"ingest_vs_read_csv": 1.5, "build_vs_dbt": 1.5, "unchanged_build_s": 2.0,
                "unchanged_build_share": 0.15, "new_month_vs_first_month": 1.2}
FIRST_MONTH = "2024-01"
PARTNER_FEEDS = ("eligibility", "outcomes", "mailreturns", "nudges")


@dataclass
class VolumeFigures:
    scale: float
    states: int
    months: int
    history_states: int
    history_months: int
    files: int = 0
    partner_rows: int = 0
    generate_s: float = 0.0
    # 1. ingest of the partner files vs read_csv (all text, union by name)
    read_csv_s: float = 0.0
    ingest_s: float = 0.0
    ingest_vs_read_csv: float = 0.0
    casemgmt_ingest_s: float = 0.0
    # 2. build vs plain dbt build
    dbt_build_s: float = 0.0
    build_s: float = 0.0
    build_vs_dbt: float = 0.0
    # 3. nothing new
    unchanged_build_s: float = 0.0
    unchanged_vs_build: float = 0.0
    unchanged_build_skipped: bool = False
    # 4. month H+1 after H months of history vs month 1 in an empty home
    history_partner_rows: int = 0
    history_ingest_s: float = 0.0
    history_build_s: float = 0.0
    new_month_ingest_s: float = 0.0
    new_month_build_s: float = 0.0
    new_month_skipped_partitions: int = 0
    new_month_built_partitions: int = 0
    first_month_ingest_s: float = 0.0
    first_month_build_s: float = 0.0
    new_month_vs_first_month: float = 0.0
    # 6. the Dagster instance after the grid's ingests and builds: its size on disk, the
    # partition materializations it holds, and the size per materialization
    instance_mb: float = 0.0
    materializations: int = 0
    instance_kb_per_materialization: float = 0.0
    repeat: int = 1
    repeats: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _months(first: str, count: int) -> list:
    from bdt_platform.core import partitions as parts

    start = parts.parse_month(first)
    return [parts.add_months(start, n) for n in range(count)]


def _generate(home: Path, casemgmt: Path, states: list[str], months: list, scale: float,
              env: dict[str, str]):
    from bdt_platform.synthetic import generate

    return generate(home / "inbox", casemgmt, states=states, months=months, scale=scale,
                    seed=42, pii_key=env["BDT_PII_KEY"])


def _partner_rows(summary) -> int:
    return sum(n for feed, n in summary.rows.items() if feed in PARTNER_FEEDS)


def _built_partitions(log_text: str) -> tuple[int, int]:
    """(partitions skipped, partitions built) by what one ``bdt build`` printed
    (``warehouse.build``)."""
    skipped = re.search(r"(\d+)(?: of \d+)? partition\(s\) up to date", log_text)
    built = re.search(r"building models and reports for (\d+) partition", log_text)
    return (int(skipped.group(1)) if skipped else 0), (int(built.group(1)) if built else 0)


def run_volume_bench(scale: float = 100.0, states: int = 4, months: int = 2,
                     history_states: int = 1, history_months: int = 24, repeat: int = 1,
                     echo=print) -> VolumeFigures:
    from bdt_platform.core import partitions as parts

    figures = VolumeFigures(scale, states, months, history_states, history_months,
                            repeat=max(1, repeat))
    root = Path(tempfile.mkdtemp(prefix="bdt-bench-volume-"))
    log = root / "bench.log"
    echo(f"volume bench in {root} (scale {scale:g}); log {log}")
    try:
        _grid(figures, root, log, list(parts.STATES[:states]), _months(FIRST_MONTH, months),
              echo)
        _new_month(figures, root, log, list(parts.STATES[:history_states]), echo)
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _grid(f: VolumeFigures, root: Path, log: Path, states: list[str], months: list,
          echo) -> None:
    """Goals 1-3 on S states x M months."""
    home = root / "grid"
    env = _env(home)
    pending = root / "grid-casemgmt.sqlite"  # moved in after the timed ingests (read_csv reads files)
    started = time.perf_counter()
    summary = _generate(home, pending, states, months, f.scale, env)
    f.generate_s = time.perf_counter() - started
    f.files, f.partner_rows = len(summary.files), _partner_rows(summary)
    echo(f"  generated {len(states)} state(s) x {len(months)} month(s): {f.files} partner "
         f"files, {f.partner_rows:,} partner rows in {f.generate_s:.0f}s")
    # The home's Dagster instance exists before the timed ingests, as after a home's first run.
    _run_child([sys.executable, "-c", INGEST_START_UP], env, log, "bdt ingest's start-up alone")
    generated = root / "grid-generated"
    shutil.copytree(home, generated, symlinks=True)
    runs = f.repeats = {"read_csv_s": [], "ingest_s": [], "dbt_build_s": [], "build_s": []}
    for attempt in range(f.repeat):
        if attempt:
            _restore(generated, home)
        seconds, rows = _read_csv_baseline(summary.files, root, union_by_name=True,
                                           all_varchar=True)
        runs["read_csv_s"].append(seconds)
        echo(f"  DuckDB read_csv (all text, union by name): {rows:,} rows in {seconds:.2f}s")
        seconds, _ = _run_child(_bdt("ingest", "--settle", "0"), env, log,
                                "bdt ingest of the partner files")
        runs["ingest_s"].append(seconds)
        echo(f"  bdt ingest, partner files: {seconds:.1f}s")
    shutil.rmtree(generated)
    f.read_csv_s, f.ingest_s, f.ingest_vs_read_csv = _paired(runs, "read_csv_s", "ingest_s")
    shutil.move(str(pending), str(load_settings(env).casemgmt_sqlite_path))
    f.casemgmt_ingest_s, _ = _run_child(_bdt("ingest", "--settle", "0"), env, log,
                                        "bdt ingest of the case-management database")
    echo(f"  bdt ingest, case management: {f.casemgmt_ingest_s:.1f}s (not in the ratio)")
    ingested = root / "grid-ingested"
    if f.repeat > 1:
        shutil.copytree(home, ingested, symlinks=True)
    for attempt in range(f.repeat):
        if attempt:
            _restore(ingested, home)
        runs["dbt_build_s"].append(plain_dbt_build(home, root, env, log, attempt))
        seconds, _ = _run_child(_bdt("build"), env, log, "bdt build")
        runs["build_s"].append(seconds)
        echo(f"  bdt build {seconds:.1f}s, plain dbt build {runs['dbt_build_s'][-1]:.1f}s")
    shutil.rmtree(ingested, ignore_errors=True)
    f.dbt_build_s, f.build_s, f.build_vs_dbt = _paired(runs, "dbt_build_s", "build_s")
    skipped_before = _log_count(log, NOTHING_NEW)
    f.unchanged_build_s, _ = _run_child(_bdt("build"), env, log, "bdt build with nothing new")
    f.unchanged_build_skipped = _log_count(log, NOTHING_NEW) > skipped_before
    f.unchanged_vs_build = f.unchanged_build_s / f.build_s
    if not f.unchanged_build_skipped:
        f.notes.append("the build with nothing new did not skip (see the log)")
    echo(f"  bdt build with nothing new: {f.unchanged_build_s:.2f}s "
         f"({f.unchanged_vs_build:.0%} of the first)")
    f.instance_mb, f.materializations = instance_size(home / "dagster")
    f.instance_kb_per_materialization = f.instance_mb * 1024 / max(f.materializations, 1)
    echo(f"  Dagster instance: {f.instance_mb:.1f} MB for {f.materializations:,} "
         f"materializations ({f.instance_kb_per_materialization:.1f} KB each)")
    shutil.rmtree(home)


def instance_size(dagster_home: Path) -> tuple[float, int]:
    """(MB the Dagster instance folder holds on disk, asset materializations recorded in it):
    what the event log costs per partition materialization (``bdt prune`` keeps these; it
    removes old runs' log lines and step events)."""
    import dagster as dg

    size = sum(path.stat().st_size for path in dagster_home.rglob("*") if path.is_file())
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        count = sum(len(instance.all_logs(run.run_id,
                                          of_type=dg.DagsterEventType.ASSET_MATERIALIZATION))
                    for run in instance.get_runs())
    finally:
        instance.dispose()
    return size / 2**20, count


def _new_month(f: VolumeFigures, root: Path, log: Path, states: list[str], echo) -> None:
    """Goal 4, in one home: month 1 delivered to the empty home (its ingest + build timed: the
    baseline), months 2..H (the rest of the history), then month H+1 (timed)."""
    months = _months(FIRST_MONTH, f.history_months + 1)
    home = root / "history"
    env = _env(home)
    casemgmt = load_settings(env).casemgmt_sqlite_path
    f.first_month_ingest_s, f.first_month_build_s = _deliver(home, casemgmt, states, months[:1],
                                                             f, env, log, "month 1")
    echo(f"  month 1 in an empty home: ingest {f.first_month_ingest_s:.1f}s, build "
         f"{f.first_month_build_s:.1f}s")
    if f.history_months > 1:
        f.history_ingest_s, f.history_build_s = _deliver(
            home, casemgmt, states, months[1:-1], f, env, log, "the history")
        echo(f"  history: months 2-{f.history_months} of {len(states)} state(s), "
             f"{f.history_partner_rows:,} partner rows in all: ingest {f.history_ingest_s:.1f}s, "
             f"build {f.history_build_s:.1f}s")
    before = log.stat().st_size
    f.new_month_ingest_s, f.new_month_build_s = _deliver(
        home, casemgmt, states, months[-1:], f, env, log, f"month {f.history_months + 1}",
        history=False)
    with log.open("rb") as out:
        out.seek(before)
        f.new_month_skipped_partitions, f.new_month_built_partitions = _built_partitions(
            out.read().decode(errors="replace"))
    echo(f"  month {f.history_months + 1} ({months[-1]:%Y-%m}): ingest "
         f"{f.new_month_ingest_s:.1f}s, build {f.new_month_build_s:.1f}s "
         f"({f.new_month_built_partitions} partition(s) built, "
         f"{f.new_month_skipped_partitions} skipped)")
    f.new_month_vs_first_month = ((f.new_month_ingest_s + f.new_month_build_s)
                                  / (f.first_month_ingest_s + f.first_month_build_s))
    shutil.rmtree(home)


def _deliver(home: Path, casemgmt: Path, states: list[str], months: list, f: VolumeFigures,
             env: dict[str, str], log: Path, what: str, history: bool = True
             ) -> tuple[float, float]:
    """Generate ``months`` into the home (partner files and case-management rows), then
    ``bdt ingest`` and ``bdt build``: their seconds. ``history``: the rows count as history."""
    summary = _generate(home, casemgmt, states, months, f.scale, env)
    if history:
        f.history_partner_rows += _partner_rows(summary)
    ingest_s, _ = _run_child(_bdt("ingest", "--settle", "0"), env, log, f"bdt ingest of {what}")
    build_s, _ = _run_child(_bdt("build"), env, log, f"bdt build of {what}")
    return ingest_s, build_s


def render(f: VolumeFigures) -> str:
    goals = VOLUME_GOALS

    def ratio(value: float, goal: float) -> str:
        return f"{value:.2f}x (goal < {goal:g}x) {'ok' if value < goal else 'MISSED'}"

    limit = max(goals["unchanged_build_s"], goals["unchanged_build_share"] * f.build_s)
    unchanged_ok = f.unchanged_build_skipped and f.unchanged_build_s <= limit
    rows = [
        ("1. ingest (partner files) vs DuckDB read_csv (text, union by name)",
         ratio(f.ingest_vs_read_csv, goals["ingest_vs_read_csv"]),
         f"{f.ingest_s:.1f}s ({f.partner_rows / f.ingest_s:,.0f} rows/s) vs {f.read_csv_s:.2f}s;"
         f" case-management extract {f.casemgmt_ingest_s:.1f}s more"),
        ("2. bdt build vs plain dbt build", ratio(f.build_vs_dbt, goals["build_vs_dbt"]),
         f"{f.build_s:.1f}s vs {f.dbt_build_s:.1f}s"),
        ("3. bdt build with nothing new vs the first build",
         f"{f.unchanged_vs_build:.0%} (goal < {goals['unchanged_build_s']:g}s or <= "
         f"{goals['unchanged_build_share']:.0%}) {'ok' if unchanged_ok else 'MISSED'}",
         f"{f.unchanged_build_s:.2f}s vs {f.build_s:.1f}s; "
         + ("every partition skipped" if f.unchanged_build_skipped else "DID NOT SKIP")),
        (f"4. month {f.history_months + 1} after {f.history_months} of history vs month 1 "
         "in an empty home (ingest + build)",
         ratio(f.new_month_vs_first_month, goals["new_month_vs_first_month"]),
         f"{f.new_month_ingest_s + f.new_month_build_s:.1f}s (ingest {f.new_month_ingest_s:.1f}"
         f"s, build {f.new_month_build_s:.1f}s: {f.new_month_built_partitions} partition(s) "
         f"built, {f.new_month_skipped_partitions} skipped) vs "
         f"{f.first_month_ingest_s + f.first_month_build_s:.1f}s (ingest "
         f"{f.first_month_ingest_s:.1f}s, build {f.first_month_build_s:.1f}s); history "
         f"{f.history_partner_rows:,} partner rows (months 2-{f.history_months}: ingest "
         f"{f.history_ingest_s:.1f}s, build {f.history_build_s:.1f}s)"),
    ]
    rows.append(("6. Dagster instance per partition materialization",
                 f"{f.instance_kb_per_materialization:.1f} KB",
                 f"{f.instance_mb:.1f} MB for {f.materializations:,} materializations (the "
                 "grid's ingests and builds; `bdt prune` deletes old runs' log lines)"))
    if f.repeat > 1:
        rows.append(repeated_pairs_row(f.repeat, f.repeats))
    return table(f"bdt bench --volume (scale {f.scale:g}): {f.states} states x {f.months} "
                 f"months, {f.files} partner files, {f.partner_rows:,} partner rows; history "
                 f"{f.history_states} state(s) x {f.history_months} months", "goal", rows,
                 f.notes)
