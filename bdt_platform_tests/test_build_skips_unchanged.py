"""``bdt build`` skips what is up to date, and never what changed (issue 27, goal 3).

One home, 2 adjacent states x 2 months at a small scale (real DuckDB, real dbt, real Dagster
instance), built once; then, in order: a build with nothing new (no run, no dbt command, the
tables untouched), the same file delivered again (a new raw materialization with the same data
version: still nothing to build), one partner file changed for the last month (only that
partition built, with the unpartitioned models, and the result equal to a forced full rebuild),
a new month (only its partitions built, equal to a full rebuild), and a dbt model's SQL changed (a new code version: everything built again, then nothing; and
again after its build run is recorded as failed).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import instance_for
from bdt_platform.inbox.ingest import ingest
from bdt_platform.synthetic import generate
from bdt_platform.warehouse.build import BUILD_JOB, build, partitions_with_raw_data

from .conftest import make_settings

STATES = ["NJ", "NM"]  # adjacent in the state order: the grid is one rectangle
JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
GRID = [(state, month) for month in (JAN, FEB) for state in STATES]
TABLES = ["marts.fct_outreach", "marts.fct_enrollment_outcomes", "marts.fct_applications",
          "marts.fct_calls", "marts.dim_person", "reports.outcomes", "outreach.mail_list",
          "outreach.nudge_assignments"]
FACTS = [dg.AssetKey(["marts", name]) for name in
         ("fct_outreach", "fct_enrollment_outcomes", "fct_applications", "fct_calls")]
DIM_PERSON = dg.AssetKey(["marts", "dim_person"])


class Home:
    def __init__(self, home: Path, dbt_project_dir: Path | None = None):
        from bdt_platform.definitions import build_definitions

        extra = {"BDT_DBT_PROJECT_DIR": str(dbt_project_dir)} if dbt_project_dir else {}
        self.settings = make_settings(home, **extra)
        self.defs = build_definitions(self.settings)
        self.instance = instance_for(self.settings)
        self.lines: list[str] = []

    def ingest(self):
        r = self.defs.resources
        return ingest(self.defs, self.instance, r["inbox"], r["lake"], r["warehouse"],
                      r["casemgmt"], settle_seconds=0, echo=self.lines.append)

    def build(self, **options):
        self.lines.clear()
        # As `bdt build` calls it: the settings that shape results are part of the fingerprints.
        result = build(self.defs, self.instance, self.defs.resources["warehouse"],
                       echo=self.lines.append, settings_inputs=self.settings.result_shaping(),
                       **options)
        assert result.exit_code == 0, self.lines
        return result

    def build_runs(self) -> list:
        return list(self.instance.get_run_records(dg.RunsFilter(job_name=BUILD_JOB)))

    def all_runs(self) -> int:
        return len(self.instance.get_run_records())

    def dbt_commands(self) -> list[str]:
        """The target folder of every dbt command run in this home (one per command)."""
        runs = self.settings.home / "dbt" / "runs"
        return sorted(p.name for p in runs.iterdir()) if runs.exists() else []

    def tables(self) -> dict[str, pd.DataFrame]:
        warehouse = self.defs.resources["warehouse"]
        return {table: warehouse.query(f"select * from {table} order by all") for table in TABLES}

    def latest_storage_ids(self, key: dg.AssetKey) -> dict[str, int]:
        return dict(self.instance.get_latest_storage_id_by_partition(
            key, dg.DagsterEventType.ASSET_MATERIALIZATION))

    def dim_person_sql(self, command: str) -> str:
        """The select dbt ran for ``dim_person`` in one dbt command (its target folder)."""
        [path] = (self.settings.home / "dbt" / "runs" / command / "compiled").rglob(
            "dim_person.sql")
        return path.read_text()

    def dim_person_storage_id(self) -> int:
        [record] = self.instance.get_asset_records([DIM_PERSON])
        return record.asset_entry.last_materialization_record.storage_id


def _deliver(home: Home, partner: str, name: str, data: bytes) -> None:
    """A partner drops ``name`` into the inbox, later than anything before it."""
    path = Path(home.settings.inbox) / partner / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    future = time.time() + 5
    os.utime(path, (future, future))


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("skips")
    home = Home(root / "home")
    generate(Path(home.settings.inbox), home.settings.casemgmt_sqlite_path, states=STATES,
             months=[JAN, FEB], scale=0.3, seed=27, pii_key=home.settings.pii_key)
    assert home.ingest().exit_code == 0
    home.first = home.build()
    home.root = root
    yield home
    home.instance.dispose()


def test_first_build_builds_every_partition_never_built(home):
    plan = home.first.plan
    assert plan.to_build == sorted(GRID, key=lambda p: (p[1], p[0])) and not home.first.skipped
    assert set(plan.stale.values()) == {"never built"}
    assert all(run.success for run in home.first.runs) and len(home.first.runs) >= 4


def test_a_build_with_nothing_new_runs_nothing_and_says_so(home):
    runs, commands, tables = home.all_runs(), home.dbt_commands(), home.tables()
    facts = {key: home.latest_storage_ids(key) for key in FACTS}
    result = home.build()
    assert result.runs == [] and result.exit_code == 0
    assert sorted(result.skipped) == sorted(GRID)
    newest_build = home.build_runs()[0].dagster_run.run_id
    assert any(line.startswith(f"nothing new since run {newest_build[:8]}: 4 partition(s) up "
                               "to date, skipped") for line in home.lines), home.lines
    # The mechanism, from outside: no Dagster run started, dbt never ran, nothing rewritten.
    assert home.all_runs() == runs
    assert home.dbt_commands() == commands
    assert {key: home.latest_storage_ids(key) for key in FACTS} == facts
    for table, frame in home.tables().items():
        pd.testing.assert_frame_equal(frame, tables[table], obj=table)


def test_the_command_knows_nothing_is_new_without_loading_the_definitions(home):
    """``bdt build`` decides "nothing new" from the instance, the warehouse and the sources'
    hash alone: it exits 0 having run nothing, and never imported dagster-dbt or dbt (the
    definitions' ~4-5 s of start-up)."""
    runs = home.all_runs()
    script = ("import sys\n"
              "from bdt_platform.cli import main\n"
              "code = main(['build'])\n"
              "print('LOADED', sorted(m for m in ('dagster_dbt', 'dbt', 'bdt_platform.definitions')"
              " if m in sys.modules))\n"
              "sys.exit(code)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDT_", "DAGSTER_"))}
    env.update(BDT_HOME=str(home.settings.home), BDT_PII_KEY=home.settings.pii_key,
               DAGSTER_HOME=str(home.settings.dagster_home), PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing new since run" in done.stdout and "4 partition(s) up to date" in done.stdout
    assert "LOADED []" in done.stdout, done.stdout
    assert home.all_runs() == runs


def test_the_same_file_delivered_again_is_not_a_change(home):
    """A re-delivery of identical bytes is loaded again (a new raw materialization), with the
    same data version: still nothing to build."""
    processed = Path(home.settings.inbox) / "processed"
    original = next(processed.glob("*/*_NJ_202401_outcomes.csv"))
    before = home.latest_storage_ids(dg.AssetKey(["raw", "outcomes"]))
    _deliver(home, original.parent.name, original.name, original.read_bytes())
    assert home.ingest().exit_code == 0
    after = home.latest_storage_ids(dg.AssetKey(["raw", "outcomes"]))
    key = parts.partition_key("NJ", JAN)
    assert after[key] > before[key], "the file was loaded again"
    runs = home.all_runs()
    result = home.build()
    assert result.runs == [] and home.all_runs() == runs, home.lines


def test_one_changed_partition_is_built_alone_and_equals_a_full_rebuild(home):
    """A partner re-sends the last month's eligibility for one state with a row fewer: that
    partition is built (with the unpartitioned models, dim_person among them), no other; the
    warehouse then equals what a forced build of every partition makes of the same data."""
    changed = ("NM", FEB)
    processed = Path(home.settings.inbox) / "processed"
    original = sorted(processed.glob("*/*_NM_202402_eligibility.csv"))[0]
    lines = original.read_bytes().splitlines(keepends=True)
    _deliver(home, original.parent.name, original.name, b"".join(lines[:-1]))
    assert home.ingest().exit_code == 0
    facts = {key: home.latest_storage_ids(key) for key in FACTS}
    dim_person = home.dim_person_storage_id()
    commands = home.dbt_commands()

    result = home.build()
    assert result.plan.to_build == [changed], result.plan.stale
    assert sorted(result.skipped) == sorted(set(GRID) - {changed})
    assert "raw/eligibility NM 2024-02" in result.plan.stale[changed]
    assert any("3 of 4 partition(s) up to date" in line for line in home.lines), home.lines
    [built] = [run for run in home.build_runs()
               if run.dagster_run.run_id in {r.run_id for r in result.runs}]
    assert built.dagster_run.tags["dagster/asset_partition_range_start"] == \
        built.dagster_run.tags["dagster/asset_partition_range_end"] == \
        parts.partition_key(*changed)
    assert len(home.dbt_commands()) == len(commands) + 1  # one dbt command
    assert home.dim_person_storage_id() > dim_person  # the unpartitioned models rebuilt
    # dim_person computed only the people whose rows changed (incremental by person)...
    assert "kept._appearance_digest != f.appearance_digest" in home.dim_person_sql(
        home.dbt_commands()[-1])
    key = parts.partition_key(*changed)
    for fact in FACTS:
        now = home.latest_storage_ids(fact)
        assert now[key] > facts[fact][key], fact
        assert {k: v for k, v in now.items() if k != key} == \
            {k: v for k, v in facts[fact].items() if k != key}, f"{fact}: others rebuilt"
    incremental = home.tables()
    assert home.build().runs == []  # and now it is up to date

    forced = home.build(force=True)
    assert sorted(forced.partitions) == sorted(GRID) and forced.plan is None
    # ...and the forced build computed every person again: a full rebuild to compare with.
    assert "kept." not in home.dim_person_sql(home.dbt_commands()[-1])
    full = home.tables()
    for table, frame in full.items():
        pd.testing.assert_frame_equal(incremental[table], frame, obj=table)


def _data_versions(home: Home, feed: str) -> dict[str, str]:
    tags = home.instance.event_log_storage.get_latest_tags_by_partition(
        dg.AssetKey(["raw", feed]), dg.DagsterEventType.ASSET_MATERIALIZATION,
        ["dagster/data_version"])
    return {partition: values["dagster/data_version"] for partition, values in tags.items()}


def _call_again(database: Path, state: str, month: dt.date, at: str) -> None:
    """A client created in ``month`` calls the call center again at ``at``, as the
    case-management system records it: a new call, and the client's ``updated_at``."""
    import sqlite3

    with sqlite3.connect(database) as connection:
        [client] = connection.execute(
            "SELECT client_id FROM clients WHERE state = ? AND created_at LIKE ? "
            "ORDER BY client_id LIMIT 1", (state, f"{month:%Y-%m}%")).fetchone() or [None]
        assert client is not None
        connection.execute(
            "INSERT INTO calls (call_id, client_id, state, started_at, duration_s, outcome, "
            "updated_at) VALUES (?, ?, ?, ?, 300, 'completed', ?)",
            (f"CALL-{state}-{at[:7].replace('-', '')}-AGAIN1", client, state, at, at))
        connection.execute("UPDATE clients SET updated_at = ? WHERE client_id = ?", (at, client))


def test_a_new_month_builds_that_month_alone_and_equals_a_full_rebuild(home):
    """Goal 4: the next month arrives - its partner files, and a case-management extract in
    which clients of earlier months called again (their ``updated_at``, so their months'
    client partitions are extracted again with a new data version, their ids and person tokens
    as before). Only the new month's partitions are built: the returns of the new month's
    file are not read by earlier months' lists (a list reads the returns known by its month),
    and the returning clients' partitions reach no partitioned model. The warehouse then equals
    a forced build of every partition."""
    march = dt.date(2024, 3, 1)
    before = _data_versions(home, "clients")
    generate(Path(home.settings.inbox), home.settings.casemgmt_sqlite_path, states=STATES,
             months=[march], scale=0.3, seed=27, pii_key=home.settings.pii_key)
    _call_again(home.settings.casemgmt_sqlite_path, "NJ", JAN, "2024-03-14T15:00:00+00:00")
    assert home.ingest().exit_code == 0
    after = _data_versions(home, "clients")
    returning = sorted(key for key in before if after[key] != before[key])
    assert parts.partition_key("NJ", JAN) in returning, "the case is not exercised"
    assert any(home.latest_storage_ids(dg.AssetKey(["raw", "mailreturns"]))
               .get(parts.partition_key(state, march)) for state in STATES)

    result = home.build()
    new = [(state, march) for state in STATES]
    assert result.plan.to_build == new, result.plan.stale
    assert sorted(result.skipped) == sorted(GRID)
    incremental = home.tables()
    assert home.build().runs == []

    forced = home.build(force=True)
    assert sorted(forced.partitions) == sorted(GRID + new)
    full = home.tables()
    for table, frame in full.items():
        pd.testing.assert_frame_equal(incremental[table], frame, obj=table)


def test_a_change_only_dim_person_reads_builds_the_newest_partition_once(home):
    """A caseworker corrects a February client's e-mail, and nothing else arrives: their
    client partition has a new data version, its ids and person tokens as before. No
    partitioned model reads what changed, but ``dim_person`` (unpartitioned: a person's latest
    version by ``updated_at``) does, so one build runs - of the newest partition alone - and
    then nothing is new."""
    import sqlite3

    with sqlite3.connect(home.settings.casemgmt_sqlite_path) as connection:
        connection.execute(
            "UPDATE clients SET email = 'corrected@example.org', "
            "updated_at = '2024-03-21T10:00:00+00:00' WHERE client_id = (SELECT min(client_id) "
            "FROM clients WHERE state = 'NM' AND created_at LIKE '2024-02%')")
    assert home.ingest().exit_code == 0
    dim_person = home.dim_person_storage_id()
    result = home.build()
    newest = ("NM", dt.date(2024, 3, 1))
    assert result.plan.to_build == [newest], result.plan.stale
    assert "raw/clients NM 2024-02, read by the unpartitioned models" in \
        result.plan.stale[newest]
    assert home.dim_person_storage_id() > dim_person
    assert home.build().runs == []


def test_a_changed_model_is_a_change_for_every_partition(home):
    """A dbt model's SQL changes (its code version, dagster-dbt's hash of the SQL): every
    partition is built again, the model named; after that, nothing."""
    project = home.root / "dbt_project_changed"
    shutil.copytree(home.settings.dbt_project_dir, project,
                    ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "staging" / "stg_partners__outcomes.sql"
    model.write_text(model.read_text() + "\n-- reviewed for issue 27\n")
    changed = Home(home.settings.home, dbt_project_dir=project)
    grid = sorted(partitions_with_raw_data(home.defs.resources["warehouse"]))  # March too
    try:
        result = changed.build()
        assert sorted(result.plan.to_build) == grid
        assert all("staging/stg_partners__outcomes" in reason
                   for reason in result.plan.stale.values()), result.plan.stale
        assert result.runs and all(run.success for run in result.runs)
        again = changed.build()
        assert again.runs == [] and sorted(again.skipped) == grid
        # A build whose last run failed is never taken as done: the newest build run, reported
        # failed in the instance, makes every partition it covered stale again.
        newest = changed.build_runs()[0].dagster_run
        changed.instance.report_run_failed(newest, "failed for the test")
        retried = changed.build()
        assert sorted(retried.plan.to_build) == grid
        assert all(reason.startswith(f"not built by their last build run ({newest.run_id[:8]}")
                   for reason in retried.plan.stale.values()), retried.plan.stale
        assert changed.build().runs == []
    finally:
        changed.instance.dispose()
