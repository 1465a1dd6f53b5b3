"""``BDT_ENV=prod`` end to end on emulators, and parity with the embedded default.

The same synthetic data (same seed, same PII key) goes through generate -> ingest -> build twice:
on DuckDB + a local lake, and with ``BDT_ENV=prod`` wired through the standard emulator variables
(``STORAGE_EMULATOR_HOST`` -> gcp-storage-emulator, ``BIGQUERY_EMULATOR_HOST`` -> bqemulator), so
the lake is a GCS bucket, the warehouse BigQuery and dbt runs ``dbt build`` on its bigquery
target. ``reports.outcomes`` must hold the same numbers on both.

The prod world reaches the BigQuery emulator through a TCP proxy (``tcp_proxy.py``) that passes
everything through until the last test cuts it mid-build: BigQuery unreachable in the middle of
``dbt build``.
"""

import contextlib
import datetime as dt
import hashlib
import io
import os
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
import pytest
from upath import UPath

from bdt_platform.core.runs import instance_for, run_rectangles
from bdt_platform.core.settings import load_settings
from bdt_platform.metrics import MetricLayer
from bdt_platform.reports.outcomes import COUNT_COLUMNS, REPORT_METRICS
from bdt_platform.synthetic import generate

from .conftest import TEST_PII_KEY, ingest_and_build
from .emulators import bq_emulator, gcs_emulator  # noqa: F401 - fixtures
from .person_dimension import Warehouse, check_incremental_equals_full
from .tcp_proxy import CuttableProxy

STATES = ["PA"]
MONTHS = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
SCALE, SEED = 0.3, 11
RAW = ["eligibility", "outcomes", "mailreturns", "nudges", "clients", "applications", "calls"]
MARTS = ["fct_outreach", "fct_calls", "fct_applications", "fct_enrollment_outcomes", "dim_person"]
FACTS = [dg.AssetKey(["marts", name]) for name in MARTS if name.startswith("fct_")]
EXPORT = dg.AssetKey(["lake", "outcomes_report"])
# Column types as dbt sees them, per backend.
CANONICAL = {"VARCHAR": "string", "STRING": "string", "BIGINT": "int", "INTEGER": "int",
             "INT64": "int", "DOUBLE": "float", "FLOAT64": "float", "FLOAT": "float",
             "BOOLEAN": "bool", "BOOL": "bool", "DATE": "date", "TIMESTAMP": "timestamp",
             "TIMESTAMP WITH TIME ZONE": "timestamp", "NUMERIC": "numeric", "DATETIME": "datetime"}


def _columns(warehouse, table: str) -> dict[str, str]:
    """``column -> canonical type`` of a table, read from the backend's own catalog."""
    dataset, _, name = table.partition(".")
    if hasattr(warehouse, "client"):  # BigQuery
        fields = warehouse.client().get_table(f"{warehouse.project}.{table}").schema
        pairs = [(f.name, f.field_type) for f in fields]
    else:
        frame = warehouse.query("SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_schema = ? AND table_name = ? "
                                "ORDER BY ordinal_position", [dataset, name])
        pairs = list(zip(frame["column_name"], frame["data_type"]))
    return {column: CANONICAL.get(kind, kind) for column, kind in pairs}


@contextlib.contextmanager
def _world_environ(environ: dict[str, str]):
    """The process environment of one world inside the block (bdt's and the emulators'
    variables replaced by ``environ``), and as it was after: resources.py exports the dbt
    profile's variables."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("BDT_") or n in (
                "DAGSTER_HOME", "STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST")]:
            del os.environ[name]
        os.environ.update(environ)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _run_world(environ: dict[str, str]) -> dict:
    """generate -> ingest -> build (+ the lake export) under ``environ``, read back the results."""
    from bdt_platform.definitions import build_definitions

    with _world_environ(environ):
        settings = load_settings()  # from the process environment, as `bdt` and dagster do
        summary = generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=STATES,
                           months=MONTHS, scale=SCALE, seed=SEED, pii_key=settings.pii_key)
        originals = {path.name: path.read_bytes() for path in summary.files}
        defs = build_definitions(settings)
        instance = instance_for(settings)
        resources = defs.resources
        try:
            ingested, built, lines = ingest_and_build(defs, instance,
                                                      tool_log=settings.home / "dbt.log")
            pairs = [(s, m) for s in STATES for m in MONTHS]
            exported = run_rectangles(defs, instance, "build_warehouse", pairs, selection=[EXPORT])
            warehouse = resources["warehouse"]
            report = warehouse.query("SELECT * FROM reports.outcomes ORDER BY state, month")
            counts = {t: int(warehouse.query(f"SELECT count(*) AS n FROM raw.{t}")["n"].iloc[0])
                      for t in RAW}
            facts = {t: int(warehouse.query(f"SELECT count(*) AS n FROM marts.{t}")["n"].iloc[0])
                     for t in MARTS}
            layer = MetricLayer.for_warehouse(warehouse, settings.dbt_project_dir)
            metrics = layer.query(REPORT_METRICS, by=("state", "month"))
            drilled = {(name, s, m): len(layer.records(name, s, m)) for name in COUNT_COLUMNS
                       for s in STATES for m in MONTHS}
            spread = warehouse.query("select state, month, min(days_from_mailing) as lo, "
                                     "max(days_from_mailing) as hi from semantic.sem_applications "
                                     "group by state, month")
            columns = {t: _columns(warehouse, t) for t in [*(f"raw.{n}" for n in RAW),
                                                           *(f"marts.{n}" for n in MARTS),
                                                           "reports.outcomes"]}
        finally:
            instance.dispose()
    return {"environ": environ, "settings": settings, "originals": originals, "ingested": ingested, "built": built,
            "exported": exported, "report": report, "counts": counts, "facts": facts,
            "columns": columns, "metrics": metrics, "drilled": drilled,
            "spread": spread,
            "lines": lines, "lake": resources["lake"], "warehouse": resources["warehouse"]}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory, gcs_emulator, bq_emulator):
    base = tmp_path_factory.mktemp("parity")
    local = _run_world({"BDT_HOME": str(base / "local"), "BDT_PII_KEY": TEST_PII_KEY})
    port = int(bq_emulator.url.rsplit(":", 1)[1])
    with CuttableProxy("127.0.0.1", port) as proxy:
        prod = _run_world({
            "BDT_ENV": "prod", "BDT_HOME": str(base / "prod"), "BDT_PII_KEY": TEST_PII_KEY,
            "BDT_GCP_PROJECT": bq_emulator.project, "BDT_GCS_BUCKET": gcs_emulator.bucket,
            "BDT_BQ_MAX_BYTES_BILLED": str(10 * 1024**3),
            "STORAGE_EMULATOR_HOST": gcs_emulator.url.removeprefix("http://"),
            "BIGQUERY_EMULATOR_HOST": proxy.url,
        })
        prod["proxy"] = proxy
        yield local, prod


#: The approximate median (MetricFlow 0.213 renders only APPROX_QUANTILES on BigQuery). The
#: emulator's translation of ``APPROX_QUANTILES(x, 2)[OFFSET(1)]`` to DuckDB returns the array's
#: last element (the maximum) instead of the middle one, so on the emulator this column is only
#: checked to lie within the values it summarizes; on DuckDB test_metrics.py checks it against
#: the exact median.
EMULATOR_MEDIAN = "days_mailing_to_application"


def _normalized(report: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = report.drop(columns=list(drop)).copy()
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    frame = frame.sort_values(["state", "month"]).reset_index(drop=True)
    for column in frame.columns:
        if column not in ("state", "month"):
            frame[column] = frame[column].astype("float64").round(9)
    return frame[sorted(frame.columns)]


def test_prod_runs_on_gcs_and_bigquery(worlds):
    _, prod = worlds
    settings = prod["settings"]
    assert settings.env == "prod" and settings.dbt_target == "bigquery"
    assert prod["ingested"].exit_code == 0, prod["lines"]
    assert prod["built"].exit_code == 0, prod["lines"]
    assert type(prod["warehouse"]).__name__ == "BigQueryWarehouse"
    assert prod["lake"].root == f"gs://{settings.gcs_bucket}/lake"
    # The partner files are archived in the bucket byte for byte.
    archived = {path.name.split("_", 2)[2]: path.read_bytes()
                for path in prod["lake"].path("archive").rglob("*")
                if path.is_file() and "_casemgmt_" not in path.name}
    assert set(archived) == set(prod["originals"])
    for name, data in prod["originals"].items():
        assert hashlib.sha256(archived[name]).hexdigest() == hashlib.sha256(data).hexdigest()


def test_dbt_build_on_bigquery_passes_its_tests(worlds):
    _, prod = worlds
    evaluations = [e for run in prod["built"].runs for e in run.check_evaluations()]
    dbt_checks = [e for e in evaluations if e.check_name != "contract"]
    assert len(dbt_checks) > 50  # dbt's data tests, as asset checks
    failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in dbt_checks if not e.passed]
    assert failed == []
    assert all(run.success for run in prod["built"].runs)


def test_same_generated_data_gives_the_same_report(worlds):
    local, prod = worlds
    assert local["originals"] == prod["originals"]  # the very same partner files
    assert local["counts"] == prod["counts"] and all(local["counts"].values())
    assert local["facts"] == prod["facts"]
    # The same column names, order and types on both: what dbt reads and what it builds.
    for table, columns in local["columns"].items():
        assert prod["columns"][table] == columns, table
    mine = _normalized(local["report"], drop=(EMULATOR_MEDIAN,))
    theirs = _normalized(prod["report"], drop=(EMULATOR_MEDIAN,))
    assert list(mine.columns) == list(theirs.columns)
    assert len(mine) == len(STATES) * len(MONTHS)
    pd.testing.assert_frame_equal(mine, theirs)
    assert (mine["pieces_mailed"] > 0).all() and (mine["approvals"] >= 0).all()


def test_the_metric_layer_agrees_with_the_report_on_both_warehouses(worlds):
    """reports.outcomes takes its numbers from the metric layer: on DuckDB and on BigQuery the
    layer queried afterwards gives the report's values on every partition, and each count's
    drill-down lists as many records as the count."""
    for world in worlds:
        report = _normalized(world["report"], drop=(EMULATOR_MEDIAN,))
        metrics = _normalized(world["metrics"], drop=(EMULATOR_MEDIAN,))
        assert list(report.columns) == list(metrics.columns)
        pd.testing.assert_frame_equal(report, metrics)
        for (name, state, month), count in world["drilled"].items():
            row = report[(report["state"] == state) & (report["month"] == month)]
            assert count == row[name].iloc[0], (world["settings"].env, name, state, month)
    # The median column: the layer's value on both; on the emulator within the values it
    # summarizes (see EMULATOR_MEDIAN).
    for world in worlds:
        report, metrics = _normalized(world["report"]), _normalized(world["metrics"])
        assert report[EMULATOR_MEDIAN].tolist() == metrics[EMULATOR_MEDIAN].tolist()
        spread = _normalized(world["spread"])
        joined = report.merge(spread, on=["state", "month"])
        assert len(joined) == len(report)
        assert ((joined["lo"] <= joined[EMULATOR_MEDIAN])
                & (joined[EMULATOR_MEDIAN] <= joined["hi"])).all()


def _exported(world) -> pd.DataFrame:
    frames = []
    for state in STATES:
        for month in MONTHS:
            path: UPath = world["lake"].path("outcomes_report", f"month={month:%Y-%m}",
                                             f"state={state}.parquet")
            frames.append(pq.read_table(io.BytesIO(path.read_bytes())).to_pandas())
    return pd.concat(frames, ignore_index=True)


def test_report_parquet_in_the_lake_matches_the_report(worlds):
    for world in worlds:
        assert all(run.success for run in world["exported"])
        exported = _exported(world)
        pd.testing.assert_frame_equal(_normalized(exported), _normalized(world["report"]))


def test_prod_settings_fail_in_one_line_and_build_the_gcp_resources(tmp_path):
    from bdt_platform.definitions import build_definitions
    from bdt_platform.core.settings import SettingsError

    base = {"BDT_ENV": "prod", "BDT_HOME": str(tmp_path), "BDT_PII_KEY": "k",
            "BDT_GCP_PROJECT": "my-project", "BDT_GCS_BUCKET": "my-bucket"}
    for name in ("BDT_GCP_PROJECT", "BDT_GCS_BUCKET", "BDT_PII_KEY"):
        with pytest.raises(SettingsError, match=name) as raised:
            load_settings({k: v for k, v in base.items() if k != name})
        assert "\n" not in str(raised.value)
    for name, value in (("BDT_BQ_MAX_BYTES_BILLED", "lots"), ("BDT_GCS_BUCKET", "gs://b/x")):
        with pytest.raises(SettingsError, match=name):
            load_settings({**base, name: value})

    settings = load_settings({**base, "BDT_BQ_LOCATION": "EU", "STORAGE_EMULATOR_HOST":
                              "127.0.0.1:9023", "BIGQUERY_EMULATOR_HOST": "http://127.0.0.1:9050/"})
    assert settings.lake == "gs://my-bucket/lake" and settings.dbt_target == "bigquery"
    assert settings.storage_emulator_host == "http://127.0.0.1:9023"
    assert settings.bigquery_emulator_host == "http://127.0.0.1:9050"
    assert settings.bq_max_bytes_billed == 100 * 1024**3  # the default cap
    saved = dict(os.environ)
    try:
        defs = build_definitions(settings)  # loads without touching the network
        resources = defs.resources
        assert os.environ["BDT_BQ_API_ENDPOINT"] == "http://127.0.0.1:9050"
        assert os.environ["BDT_BQ_AUTH_METHOD"] == "oauth-secrets"
    finally:
        os.environ.clear()
        os.environ.update(saved)
    warehouse = resources["warehouse"]
    assert (type(warehouse).__name__, warehouse.project, warehouse.location,
            warehouse.api_endpoint) == ("BigQueryWarehouse", "my-project", "EU",
                                        "http://127.0.0.1:9050")
    assert resources["lake"].root == resources["lake_io_manager"].root == "gs://my-bucket/lake"
    assert resources["lake"].storage_options == {"endpoint_url": "http://127.0.0.1:9023",
                                                 "token": "anon"}
    assert resources["dbt"].target == "bigquery"
    assert defs.resolve_asset_graph().get(EXPORT).partitions_def is not None


def _fact_rows(client, project: str) -> dict[str, list[tuple]]:
    """Every mart's rows, sorted, read straight from the emulator (not via the proxy)."""
    return {table: sorted(tuple(map(str, row.values())) for row in client.query(
        f"SELECT * FROM `{project}.marts.{table}`").result()) for table in MARTS}


def test_bigquery_unreachable_mid_build(worlds, bq_emulator):
    """BigQuery stops answering while dbt sends a fact's MERGE (the proxy cuts every connection
    and refuses new ones). The dbt step's watchdog stops dbt after BDT_BQ_RETRY_SECONDS and the
    step fails with an error naming BigQuery, its URL and the cause, instead of Google's
    client retrying each call for ten minutes. While BigQuery is down no partition is
    half-replaced (each fact's MERGE inserts and deletes in one statement), and once it is back
    the step's retry rebuilds exactly the same rows: nothing lost, nothing twice."""
    from bdt_platform.definitions import build_definitions

    _, prod = worlds
    proxy: CuttableProxy = prod["proxy"]
    direct = bq_emulator.client()
    before = _fact_rows(direct, bq_emulator.project)
    assert all(before.values())
    seen: dict = {}

    def during_the_outage():
        if not proxy.tripped.wait(timeout=300):
            return
        time.sleep(7)  # past the 3 s grace and a probe: dbt has been stopped
        seen["rows"] = _fact_rows(direct, bq_emulator.project)
        seen["refused"] = proxy.requests_refused
        proxy.restore()  # back before the step's retry (5 s or more after the failure)

    with _world_environ({**prod["environ"], "BDT_BQ_RETRY_SECONDS": "3"}):
        settings = load_settings()
        defs = build_definitions(settings)
        instance = instance_for(settings)
        watcher = threading.Thread(target=during_the_outage, daemon=True)
        try:
            proxy.trip_on(b"merge into", b"fct_applications")
            watcher.start()
            started = time.monotonic()
            # The facts of every partition again, as a build does (only the dbt step).
            runs = run_rectangles(defs, instance, "build_warehouse",
                                  [(s, m) for s in STATES for m in MONTHS], selection=FACTS,
                                  tool_log=settings.home / "dbt-outage.log")
            took = time.monotonic() - started
            watcher.join(timeout=60)
            retries = [e for run in runs for e in instance.all_logs(run.run_id)
                       if e.dagster_event is not None
                       and e.dagster_event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
        finally:
            proxy.restore()
            instance.dispose()

    assert proxy.tripped.is_set(), "the build never sent fct_applications' MERGE"
    assert seen["refused"] > 0  # the step (and its watchdog) really could not get through
    assert seen["rows"] == before, "a partition was half-replaced while BigQuery was down"
    assert [run.success for run in runs] == [True]
    assert took < 240  # not Google's ten minutes per call
    assert len(retries) == 1
    failure = retries[0].dagster_event.event_specific_data.error
    text = failure.message + "".join(c.message for c in ([failure.cause] if failure.cause else []))
    assert "BigQuery could not be reached at " + proxy.url in text
    assert "dbt build was stopped" in text
    assert _fact_rows(direct, bq_emulator.project) == before


def test_dim_person_built_incrementally_equals_a_full_rebuild_on_bigquery(worlds, bq_emulator):
    """``person_dimension.py`` on BigQuery (the emulator): people's rows change in the prod
    world's raw tables (one gone, a month fewer, a corrected zip, a new person, a client moved to
    another person, then only the order of a person's client records); dbt's incremental
    ``dim_person`` - its MERGE on person_token and the post-hook's delete - computes exactly
    those people and equals its ``--full-refresh``. Last in this module: the raw tables it
    changes are not put back."""
    from bdt_platform.definitions import build_definitions

    _, prod = worlds
    direct = bq_emulator.client()  # not through the proxy
    project = bq_emulator.project

    def sql(statement: str) -> list[tuple]:
        return [tuple(row.values()) for row in direct.query(statement).result()]

    with _world_environ(prod["environ"]):
        dbt_resource = build_definitions(load_settings()).resources["dbt"]

        def dbt(args) -> Path:
            invocation = dbt_resource.cli(list(args))
            invocation.wait()  # raises, with dbt's output, when the command fails
            return Path(invocation.target_path)

        check_incremental_equals_full(Warehouse(
            sql=sql, table=lambda name: f"`{project}.{name}`", dbt=dbt,
            columns=lambda name: [f.name for f in direct.get_table(f"{project}.{name}").schema]))
