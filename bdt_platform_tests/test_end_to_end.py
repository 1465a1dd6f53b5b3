"""The whole platform on the embedded default: generate -> ingest -> build, checked from outside.

Runs once per module over 2 states x 2 months in a temp $BDT_HOME (real DuckDB file, real
SQLite case-management database, real dbt). The report is checked against numbers computed
independently from the generated files, with pandas, not through the warehouse.
"""

import datetime as dt
import gzip
import hashlib
import os
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.filenames import drop_filename
from bdt_platform.synthetic.partners import feed_partners
from bdt_platform.inbox.ingest import ingest
from bdt_platform.core.pii import person_tokens
from bdt_platform.core.runs import instance_for, run_rectangles
from bdt_platform.synthetic import generate
from bdt_platform.warehouse.build import build

from .person_dimension import Warehouse, check_incremental_equals_full
from .conftest import make_settings

STATES = ["NJ", "PA"]
MONTHS = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
FEEDS = ["eligibility", "outcomes", "mailreturns", "nudges"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bdt_platform.definitions import build_definitions

    home = tmp_path_factory.mktemp("e2e") / "home"
    settings = make_settings(home)
    summary = generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=STATES,
                       months=MONTHS, scale=0.5, seed=7, pii_key=settings.pii_key)
    # Keep pristine copies of what the partners sent, to compare against the lake later.
    originals = {path.name: path.read_bytes() for path in summary.files}
    defs = build_definitions(settings)
    instance = instance_for(settings)
    resources = defs.resources
    lines: list[str] = []
    ingested = ingest(defs, instance, resources["inbox"], resources["lake"],
                      resources["warehouse"], resources["casemgmt"], settle_seconds=0,
                      echo=lines.append)
    built = build(defs, instance, resources["warehouse"], echo=lines.append)
    yield {"settings": settings, "defs": defs, "instance": instance, "originals": originals,
           "ingested": ingested, "built": built, "lines": lines,
           "warehouse": resources["warehouse"], "lake": resources["lake"]}
    instance.dispose()


def _file(originals, feed, state, month, partner: str | None = None) -> pd.DataFrame:
    partner = partner or feed_partners(feed, state)[0]
    name = drop_filename(partner, state, month, feed, gzip=feed == "nudges")
    data = originals[name]
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    from io import StringIO

    return pd.read_csv(StringIO(data.decode()), dtype=str, keep_default_na=False)


def _expected_report(world) -> pd.DataFrame:
    """The report, computed straight from the partner files and the case-management database."""
    db = sqlite3.connect(world["settings"].casemgmt_sqlite_path)
    calls = pd.read_sql("SELECT state, started_at FROM calls", db)
    apps = pd.read_sql("SELECT state, submitted_at FROM applications", db)
    db.close()
    rows = []
    for state in STATES:
        for month in MONTHS:
            mail = _file(world["originals"], "mailreturns", state, month)
            nudges = _file(world["originals"], "nudges", state, month)
            outcomes = _file(world["originals"], "outcomes", state, month)
            prefix = f"{month:%Y-%m}"
            approved = outcomes[outcomes["decision"] == "approved"]
            denied = outcomes[outcomes["decision"] == "denied"]
            decided = len(approved) + len(denied)
            eligible = pd.concat([_file(world["originals"], "eligibility", state, month, partner)
                                  for partner in feed_partners("eligibility", state)])
            rows.append({
                "state": state, "month": month,
                "people_eligible": len(set(person_tokens(eligible.reset_index(drop=True),
                                                        world["settings"].pii_key))),
                "pieces_mailed": len(mail),
                "people_nudged": nudges.loc[nudges["event_type"] == "sent", "recipient_key"].nunique(),
                "calls": int(((calls["state"] == state) & calls["started_at"].str.startswith(prefix)).sum()),
                "applications": int(((apps["state"] == state)
                                     & apps["submitted_at"].str.startswith(prefix)).sum()),
                "approvals": len(approved),
                "benefit_usd_monthly": round(approved["monthly_benefit_usd"].astype(float).sum(), 2),
                "approval_rate": len(approved) / decided if decided else None,
            })
    return pd.DataFrame(rows)


def test_ingest_lands_every_file_in_few_runs(world):
    ingested = world["ingested"]
    assert ingested.exit_code == 0, world["lines"]
    loaded = [f for f in ingested.files if f.status == "loaded"]
    # Every file of every partner: eligibility comes from two partners (the state agency and the
    # community partner), each other feed from one.
    assert len(loaded) == len(world["originals"]) == len(STATES) * len(MONTHS) * (len(FEEDS) + 1)
    # One run for every new file and one for the case-management extract, whatever the number
    # of partitions (NJ and PA are not even adjacent in the state order).
    assert len(ingested.runs) == 2
    inbox = Path(world["settings"].inbox)
    assert not [p for p in inbox.glob("*/*") if p.is_file()]  # every file moved to processed/


def test_lake_keeps_original_bytes(world):
    lake_root = Path(world["settings"].lake)
    archived = {p.name.split("_", 2)[2]: p.read_bytes() for p in lake_root.glob("archive/**/*")
                if p.is_file() and "_casemgmt_" not in p.name}
    assert set(archived) == set(world["originals"])
    for name, data in world["originals"].items():
        assert hashlib.sha256(archived[name]).digest() == hashlib.sha256(data).digest(), name


def test_raw_tables_are_tokenized_and_carry_partition_columns(world):
    warehouse = world["warehouse"]
    ssns = set()
    for state in STATES:
        for month in MONTHS:
            ssns |= set(_file(world["originals"], "eligibility", state, month)["ssn"]) - {""}
    assert ssns
    for table in ["eligibility", "outcomes", "mailreturns", "nudges", "clients", "applications",
                  "calls"]:
        columns = warehouse.query(
            "SELECT column_name, data_type FROM information_schema.columns "
            f"WHERE table_schema = 'raw' AND table_name = '{table}'")
        names = dict(zip(columns["column_name"], columns["data_type"]))
        assert "ssn" not in names
        assert names["state"] == "VARCHAR" and names["month"] == "DATE" and "_source_file" in names
        for column in [c for c, t in names.items() if t == "VARCHAR"]:
            hits = warehouse.query(f'SELECT count(*) AS n FROM raw.{table} WHERE "{column}" IN '
                                   f"(SELECT unnest(?::VARCHAR[]))", [sorted(ssns)])
            assert hits["n"].iloc[0] == 0, f"SSN in clear in raw.{table}.{column}"
    tokens = warehouse.query("SELECT person_token FROM raw.eligibility")["person_token"]
    assert tokens.str.fullmatch(r"tok_[0-9a-f]{32}").all()


def test_feed_materializations_record_provenance(world):
    instance = world["instance"]
    key = dg.AssetKey(["raw", "eligibility"])
    partition = parts.partition_key("PA", MONTHS[1])
    event = instance.get_latest_materialization_event(key)
    assert event is not None
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
    metadata = records[0].asset_materialization.metadata
    # The partition holds two partners' files: each is listed with its checksum and rows, and
    # the partition's row count is theirs together.
    sources = {source["partner"]: source for source in metadata["sources"].value}
    assert sorted(sources) == sorted(feed_partners("eligibility", "PA"))
    for partner, source in sources.items():
        name = drop_filename(partner, "PA", MONTHS[1], "eligibility")
        assert source["file"] == name
        assert source["sha256"] == hashlib.sha256(world["originals"][name]).hexdigest()
        assert source["size_bytes"] == len(world["originals"][name])
        assert source["rows"] == len(_file(world["originals"], "eligibility", "PA", MONTHS[1],
                                           partner))
        assert source["archive_path"].endswith(name) and source["received_at"]
    assert metadata["dagster/row_count"].value == sum(s["rows"] for s in sources.values())
    assert metadata["partners"].value == ", ".join(sorted(sources))
    assert metadata["code_version"].value and metadata["source_received_at"].value


def test_report_matches_independent_computation(world):
    assert world["built"].exit_code == 0, world["lines"]
    report = world["warehouse"].query("SELECT * FROM reports.outcomes ORDER BY state, month")
    report["month"] = pd.to_datetime(report["month"]).dt.date
    expected = _expected_report(world)
    assert len(report) == len(expected) == 4
    # people_eligible counts distinct people across the two partners' eligibility files (some
    # people are in both): fewer than their rows together.
    for column in ["people_eligible", "pieces_mailed", "people_nudged", "calls", "applications",
                   "approvals"]:
        assert report[column].tolist() == expected[column].tolist(), column
    assert report["benefit_usd_monthly"].round(2).tolist() == expected["benefit_usd_monthly"].tolist()
    assert report["approval_rate"].round(9).tolist() == expected["approval_rate"].astype(float).round(9).tolist()
    assert (report["pieces_mailed"] > report["calls"]).all()  # a plausible funnel


def test_report_headline_metadata_per_partition(world):
    instance = world["instance"]
    expected = _expected_report(world).set_index(["state", "month"])
    for state in STATES:
        for month in MONTHS:
            records = instance.fetch_materializations(dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["reports", "outcomes"]),
                asset_partitions=[parts.partition_key(state, month)]), limit=1).records
            metadata = records[0].asset_materialization.metadata
            assert metadata["approvals"].value == expected.loc[(state, month), "approvals"]
            assert metadata["pieces_mailed"].value == expected.loc[(state, month), "pieces_mailed"]


def _snapshot(warehouse, table, state, month):
    frame = warehouse.query(f"SELECT * FROM {table} WHERE state = ? AND month = ?",
                            [state, month])
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def test_rematerializing_a_partition_gives_identical_rows(world):
    warehouse, defs, instance = world["warehouse"], world["defs"], world["instance"]
    tables = ["raw.eligibility", "raw.nudges", "raw.calls", "marts.fct_outreach",
              "marts.fct_enrollment_outcomes", "reports.outcomes"]
    before = {t: _snapshot(warehouse, t, "PA", MONTHS[0]) for t in tables}
    other_before = _snapshot(warehouse, "raw.eligibility", "NJ", MONTHS[0])
    pair = [("PA", MONTHS[0])]
    # Re-load raw from the lake's archive and re-extract case management, then rebuild.
    feeds = [dg.AssetKey(["raw", name]) for name in
             ["eligibility", "outcomes", "mailreturns", "nudges", "clients", "applications", "calls"]]
    reloaded = run_rectangles(defs, instance, "ingest_feeds", pair, selection=feeds)
    assert all(run.success for run in reloaded)
    rebuilt = run_rectangles(defs, instance, "build_warehouse", pair)
    assert all(run.success for run in rebuilt)
    for table in tables:
        after = _snapshot(warehouse, table, "PA", MONTHS[0])
        assert len(after) > 0, table
        pd.testing.assert_frame_equal(after, before[table], obj=table)
    pd.testing.assert_frame_equal(_snapshot(warehouse, "raw.eligibility", "NJ", MONTHS[0]),
                                  other_before)


def test_second_ingest_finds_nothing_new(world):
    resources = world["defs"].resources
    lines: list[str] = []
    again = ingest(world["defs"], world["instance"], resources["inbox"], resources["lake"],
                   resources["warehouse"], resources["casemgmt"], settle_seconds=0,
                   echo=lines.append)
    assert again.files == [] and again.runs == [] and again.exit_code == 0
    assert any("no changes" in line for line in lines)


def test_single_run_backfills_plan_each_asset_once(world):
    """A run over many partitions records one "planned" event per asset (with its partition
    range), not one per partition: each event is a storage write (resources.py)."""
    instance = world["instance"]
    runs = world["ingested"].runs + world["built"].runs
    assert runs
    for run in runs:
        planned = [entry.dagster_event for entry in instance.all_logs(run.run_id)
                   if entry.dagster_event is not None and entry.dagster_event.event_type
                   == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED]
        keys = [event.asset_key for event in planned]
        assert keys and len(keys) == len(set(keys)), (run.run_id, keys)


def test_dbt_works_in_the_home_and_reuses_its_parse_state(world):
    """dbt's per-command folders live under $BDT_HOME/dbt (not in the package), and a command
    after the first starts from the kept parse state. Partitions are passed as environment
    variables that models read only when compiled, never while parsed, so a later command (for
    other partitions) re-parses nothing at all."""
    from bdt_platform.warehouse.build import BUILD_JOB, job_assets
    from bdt_platform.warehouse.project import DBT_PROJECT_DIR

    defs = world["defs"]
    again = run_rectangles(defs, world["instance"], BUILD_JOB, [("NJ", MONTHS[-1])],
                           selection=job_assets(defs, BUILD_JOB, partitioned=True))
    assert all(run.success for run in again)
    work = world["settings"].home / "dbt"
    assert (work / "partial_parse.msgpack").exists()
    logs = {folder.name: (folder / "dbt.log").read_text()
            for folder in sorted((work / "runs").iterdir())}
    assert len(logs) >= 2
    later = list(logs.values())[1:]
    assert all("Partial parsing enabled, no changes found" in log for log in later), [
        name for name, log in logs.items() if "no changes found" not in log]
    assert not any(str(DBT_PROJECT_DIR / "target") in log for log in logs.values())


def _warehouse_copy(world, tmp_path: Path) -> Path:
    """A copy of the world's warehouse file, for a dbt command that must not touch the world."""
    import shutil

    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(world["settings"].warehouse_path, warehouse)
    return warehouse


def _dbt(warehouse: Path, tmp_path: Path, *args: str):
    """dbt itself (the project's, its DuckDB target) on ``warehouse``; artifacts in
    ``tmp_path / "target"``, where dbt keeps its parse state for the next command there (the
    first one starts from the project's, fitted to this warehouse as a home's would be)."""
    import subprocess

    from bdt_platform.warehouse import parse_state
    from bdt_platform.warehouse.project import DBT_PROJECT_DIR, dbt_executable

    env = {**os.environ, "BDT_WAREHOUSE_PATH": str(warehouse), "BDT_DBT_TARGET": "duckdb"}
    parse_state.seed(DBT_PROJECT_DIR, tmp_path / "target", env)
    return subprocess.run(
        [dbt_executable(), *args[:1], "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
         str(DBT_PROJECT_DIR), "--target-path", str(tmp_path / "target"), *args[1:]],
        env=env, capture_output=True, text=True, timeout=600)


def test_dim_person_built_incrementally_equals_a_full_rebuild(world, tmp_path):
    """On a copy of the built warehouse, people's rows change in the raw tables (one gone, a
    month fewer, a corrected zip, a new person, a client moved to another person): dbt's
    incremental ``dim_person`` computes exactly those people and then equals its
    ``--full-refresh`` (``person_dimension.py``)."""
    import duckdb

    warehouse = _warehouse_copy(world, tmp_path)

    def sql(statement: str) -> list[tuple]:
        with duckdb.connect(str(warehouse)) as connection:
            return connection.execute(statement).fetchall()

    def dbt(args) -> Path:
        done = _dbt(warehouse, tmp_path / "dbt", *args)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return tmp_path / "dbt" / "target"

    check_incremental_equals_full(Warehouse(
        sql=sql, table=lambda name: name, dbt=dbt,
        columns=lambda name: [row[0] for row in sql(f"describe {name}")]))


def test_a_malformed_partition_var_fails_each_partitioned_model_by_name(world, tmp_path):
    """The partition selection is read only when models compile (never while parsing, nor to
    label queries), so a malformed value must still stop every partitioned model with the
    error that names the var - not a template error from the query comment - and change no
    table."""
    import duckdb

    warehouse = _warehouse_copy(world, tmp_path)
    before = duckdb.connect(str(warehouse), read_only=True).execute(
        "select count(*) from marts.fct_calls").fetchone()
    done = _dbt(warehouse, tmp_path, "build", "--select", "tag:partitioned", "--vars",
                '{"min_month": "2024-13"}')
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "is undefined" not in output
    for model in ("fct_applications", "fct_calls", "fct_enrollment_outcomes", "fct_outreach"):
        assert f"Compilation Error in model {model}" in output, output[-3000:]
    assert "var min_month must be an ISO month such as 2024-03-01 (or 2024-03), got 2024-13" \
        in output
    after = duckdb.connect(str(warehouse), read_only=True).execute(
        "select count(*) from marts.fct_calls").fetchone()
    assert after == before


def test_builds_leave_out_dbt_unit_tests_and_they_pass_on_their_own(world, tmp_path):
    """dbt's unit tests check the models' SQL on fixed inputs: not part of a build (see
    ``warehouse/assets.py``, ``BUILD_EXCLUDES``), so they run here, with dbt itself, against a
    copy of the built warehouse (they need the models' input relations to exist)."""
    import json
    import re

    # Each build's dbt summary ("Finished running 4 incremental models, ... data tests, ...")
    # names no unit test.
    summaries = [line for folder in sorted((world["settings"].home / "dbt" / "runs").iterdir())
                 for line in re.findall(r"Finished running \d[^\"]*",
                                        (folder / "dbt.log").read_text())]
    assert summaries and all("data test" in line and "unit test" not in line
                             for line in summaries), summaries
    done = _dbt(_warehouse_copy(world, tmp_path), tmp_path, "test", "--select", "test_type:unit")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "target" / "run_results.json").read_text())["results"]
    unit_tests = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert len(unit_tests) >= 4 and {r["status"] for r in unit_tests} == {"pass"}


@pytest.mark.parametrize("entry, problem", [
    ({"path": "communitycare/x.csv"}, "has keys ['path'], not ['path', 'received_at']"),
    ({"path": "communitycare/x.csv", "recieved_at": 1.0}, "has keys ['path', 'recieved_at']"),
    ({"path": "", "received_at": 1.0}, "has no path (text)"),
    ({"path": "communitycare/x.csv", "received_at": "yesterday"},
     "has a received_at that is not a number"),
    ("communitycare/x.csv", "is str, not a mapping"),
])
def test_a_malformed_file_entry_in_the_run_config_fails_the_run_naming_it(world, entry, problem):
    """Dagster checks only that a feed's ``files`` is a mapping (checking each of a year's
    2,448 entries cost ~1 s per run); the load checks every entry before it reads anything,
    and a wrong one fails the run naming the feed, partition, entry and what is wrong."""
    warehouse, defs, instance = world["warehouse"], world["defs"], world["instance"]
    before = _snapshot(warehouse, "raw.eligibility", "PA", MONTHS[0])
    key = parts.partition_key("PA", MONTHS[0])
    good = {"path": "communitycare/y.csv", "received_at": 1.0}
    outcome, = run_rectangles(
        defs, instance, "ingest_feeds", [("PA", MONTHS[0])],
        selection=[dg.AssetKey(["raw", "eligibility"])],
        run_config_for=lambda states, months: {"ops": {"raw__eligibility": {"config": {
            "files": {key: [good, entry]}, "only_listed": True}}}})
    assert not outcome.success
    failures = " ".join(outcome.failures())
    assert f"run config raw/eligibility files[{key!r}][1] {problem}" in failures, failures
    pd.testing.assert_frame_equal(_snapshot(warehouse, "raw.eligibility", "PA", MONTHS[0]),
                                  before)
