"""The warehouse writer on both backends: DuckDB (a file) and BigQuery (bqemulator, real REST API).

Round trips with the same column names and types on both, partition replace, retries without
duplicates, atomic batches; on BigQuery also the partitioning and clustering of the tables we
create and the labels and byte caps on every job sent over the wire.
"""

import datetime as dt
import os
import json
import uuid
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.storage.bigquery import BigQueryWarehouse, delete_predicate, sanitize_label
from bdt_platform.storage.warehouse import DuckDBWarehouse, Warehouse

from .emulators import bq_emulator  # noqa: F401 - fixture

M1, M2 = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
CAP = 5 * 1024**3
TS = dt.datetime(2024, 1, 31, 23, 30, 15, tzinfo=dt.timezone.utc)
# The column types a dbt model sees, per backend, for the same Arrow input.
CANONICAL = {"VARCHAR": "string", "STRING": "string", "BIGINT": "int", "INT64": "int",
             "DOUBLE": "float", "FLOAT64": "float", "FLOAT": "float", "BOOLEAN": "bool",
             "BOOL": "bool", "DATE": "date", "TIMESTAMP WITH TIME ZONE": "timestamp",
             "TIMESTAMP": "timestamp"}


@dataclass
class Backend:
    name: str
    warehouse: Warehouse
    emulator: object | None = None

    def column_types(self, table: str) -> dict[str, str]:
        dataset, _, name = table.partition(".")
        if self.name == "duckdb":
            frame = self.warehouse.query(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [dataset, name])
            pairs = zip(frame["column_name"], frame["data_type"])
        else:
            schema = self.emulator.client().get_table(
                f"{self.emulator.project}.{dataset}.{name}").schema
            pairs = ((field.name, field.field_type) for field in schema)
        return {column: CANONICAL[kind] for column, kind in pairs}


@pytest.fixture(params=["duckdb", "bigquery"])
def backend(request, tmp_path):
    if request.param == "duckdb":
        return Backend("duckdb", DuckDBWarehouse(path=str(tmp_path / "w.duckdb")))
    emulator = request.getfixturevalue("bq_emulator")
    return Backend("bigquery", BigQueryWarehouse(project=emulator.project, location="US",
                                                 api_endpoint=emulator.url, max_bytes_billed=CAP),
                   emulator)


@pytest.fixture
def table():
    return f"raw.t_{uuid.uuid4().hex[:10]}"  # tables of one emulator are shared by the session


def _rows(state, month, ids, **extra) -> pa.Table:
    n = len(ids)
    columns = {
        "id": pa.array(ids, pa.string()),
        "n": pa.array(range(n), pa.int64()),
        "amount": pa.array([1.25 * i if i else None for i in range(n)], pa.float64()),
        "ok": pa.array([i % 2 == 0 for i in range(n)], pa.bool_()),
        "day": pa.array([dt.date(2024, 1, 15)] * n, pa.date32()),
        "at": pa.array([TS] * n, pa.timestamp("us", tz="UTC")),
        "state": pa.array([state] * n, pa.string()),
        "month": pa.array([month] * n, pa.date32()),
    }
    columns.update(extra)
    return pa.table(columns)


def _ids(warehouse: Warehouse, table: str) -> list[tuple[str, dt.date, str]]:
    frame = warehouse.query(f"SELECT state, month, id FROM {table} ORDER BY state, month, id")
    return [(r.state, pd.Timestamp(r.month).date(), r.id) for r in frame.itertuples()]


def test_round_trip_names_and_types_match(backend, table):
    warehouse = backend.warehouse
    rows = _rows("PA", M1, ["a", "b", "c"])
    assert warehouse.replace_partitions(table, rows, [("PA", M1)]) == 3
    assert backend.column_types(table) == {
        "id": "string", "n": "int", "amount": "float", "ok": "bool", "day": "date",
        "at": "timestamp", "state": "string", "month": "date"}
    frame = warehouse.query(f"SELECT * FROM {table} ORDER BY id")
    assert list(frame.columns) == rows.column_names
    assert frame["id"].tolist() == ["a", "b", "c"]
    assert frame["n"].tolist() == [0, 1, 2] and str(frame["n"].dtype) == "int64"
    assert frame["amount"].isna().tolist() == [True, False, False]
    assert frame["amount"].tolist()[1:] == [1.25, 2.5]
    assert frame["ok"].tolist() == [True, False, True]
    assert [pd.Timestamp(d).date() for d in frame["day"]] == [dt.date(2024, 1, 15)] * 3
    assert [pd.Timestamp(t).tz_convert("UTC") for t in frame["at"]] == [pd.Timestamp(TS)] * 3
    assert warehouse.table_exists(table) and not warehouse.table_exists(table + "_missing")
    assert warehouse.partitions(table) == {("PA", M1)}
    counted = warehouse.query(f"SELECT count(*) AS n_rows FROM {table} WHERE state = ? AND "
                              "month = ? AND n >= ?", ["PA", M1, 1])
    assert int(counted["n_rows"].iloc[0]) == 2


def test_replace_is_idempotent_and_scoped(backend, table):
    warehouse = backend.warehouse
    warehouse.replace_partitions(table, _rows("PA", M1, ["a", "b"]), [("PA", M1)])
    warehouse.replace_partitions(table, _rows("NJ", M1, ["c"]), [("NJ", M1)])
    warehouse.replace_partitions(table, _rows("PA", M2, ["d"]), [("PA", M2)])
    for _ in range(2):  # a retried load
        warehouse.replace_partitions(table, _rows("PA", M1, ["a", "b"]), [("PA", M1)])
    assert _ids(warehouse, table) == [("NJ", M1, "c"), ("PA", M1, "a"), ("PA", M1, "b"),
                                      ("PA", M2, "d")]  # no duplicates
    warehouse.replace_partitions(table, _rows("PA", M1, ["z"]), [("PA", M1)])
    assert _ids(warehouse, table) == [("NJ", M1, "c"), ("PA", M1, "z"), ("PA", M2, "d")]
    warehouse.replace_partitions(table, _rows("PA", M1, []), [("PA", M1)])
    assert _ids(warehouse, table) == [("NJ", M1, "c"), ("PA", M2, "d")]  # emptied
    assert warehouse.partitions(table) == {("NJ", M1), ("PA", M2)}


def test_batch_replaces_many_partitions_and_tables_together(backend, table):
    warehouse = backend.warehouse
    other = table + "_b"
    with warehouse.batch() as batch:
        for state in ("NJ", "PA"):
            for month in (M1, M2):
                batch.replace(table, _rows(state, month, [f"{state}{month:%m}"]), [(state, month)])
        batch.replace(other, _rows("NY", M1, ["x"]), [("NY", M1)])
        batch.replace(other, _rows("NY", M1, ["y"]), [("NY", M1)])  # replaced again: last wins
    assert len(_ids(warehouse, table)) == 4 and _ids(warehouse, other) == [("NY", M1, "y")]


def test_a_batch_takes_rows_spilled_to_disk(backend, table, tmp_path):
    """A big file's typed rows reach a batch as staged rows, partly spilled to local disk
    (``staged_rows``): every backend writes them all and deletes the spilled file."""
    from bdt_platform.storage.staged_rows import SpillWriter, StagedRows

    writer = SpillWriter(_rows("PA", M1, []).schema, str(tmp_path))
    writer.write(_rows("PA", M2, ["c", "d"]))
    writer.write(_rows("PA", M2, ["e"]))
    spilled = writer.finish()
    with backend.warehouse.batch() as batch:
        assert batch.replace(table, StagedRows([_rows("PA", M1, ["a", "b"]), spilled]),
                             [("PA", M1), ("PA", M2)]) == 5
    assert _ids(backend.warehouse, table) == [("PA", M1, "a"), ("PA", M1, "b"), ("PA", M2, "c"),
                                              ("PA", M2, "d"), ("PA", M2, "e")]
    assert not os.path.exists(spilled.path)


def test_failed_batch_leaves_tables_as_they_were(backend, table):
    warehouse = backend.warehouse
    other = table + "_b"
    warehouse.replace_partitions(table, _rows("PA", M1, ["a"]), [("PA", M1)])
    warehouse.replace_partitions(other, _rows("PA", M1, ["o"]), [("PA", M1)])
    before, other_before = _ids(warehouse, table), _ids(warehouse, other)
    with pytest.raises(RuntimeError):
        with warehouse.batch() as batch:
            batch.replace(table, _rows("PA", M1, ["x", "y"]), [("PA", M1)])
            raise RuntimeError("load failed half-way")
    assert _ids(warehouse, table) == before
    # A statement that fails inside the transaction (a STRING into the INT64 column n) rolls
    # back the deletes and inserts of every table of the batch.
    with pytest.raises(Exception):  # noqa: B017 - duckdb and google errors differ
        with warehouse.batch() as batch:
            batch.replace(other, _rows("PA", M1, ["p", "q"]), [("PA", M1)])
            batch.replace(table, _rows("PA", M1, ["w"], n=pa.array(["not a number"])),
                          [("PA", M1)])
    assert _ids(warehouse, table) == before and _ids(warehouse, other) == other_before


# -- BigQuery only -----------------------------------------------------------------------------

def test_tables_we_create_are_partitioned_by_month_and_clustered_by_state(bq_emulator, table):
    warehouse = BigQueryWarehouse(project=bq_emulator.project, api_endpoint=bq_emulator.url)
    warehouse.replace_partitions(table, _rows("PA", M1, ["a"]), [("PA", M1)])
    dataset, _, name = table.partition(".")
    created = bq_emulator.client().get_table(f"{bq_emulator.project}.{dataset}.{name}")
    assert created.time_partitioning.type_ == "MONTH"
    assert created.time_partitioning.field == "month"
    assert created.clustering_fields == ["state"]
    # No scratch table is left behind; the standard datasets exist.
    assert [t.table_id for t in bq_emulator.client().list_tables(dataset)
            if t.table_id.startswith("_bdt_load_")] == []
    datasets = {d.dataset_id for d in bq_emulator.client().list_datasets()}
    assert {"raw", "staging", "intermediate", "marts", "reports"} <= datasets
    # A table without state/month is created plain.
    warehouse.replace_partitions(table + "_plain", pa.table({"x": [1]}), [])
    plain = bq_emulator.client().get_table(f"{bq_emulator.project}.{dataset}.{name}_plain")
    assert plain.time_partitioning is None and not plain.clustering_fields


class JobRecorder:
    """Every job body the BigQuery client sends (jobs.insert and multipart upload)."""

    def __init__(self):
        self.jobs: list[dict] = []

    def record(self, method, url, data=None, json_body=None):
        if method != "POST" or "/jobs" not in url:
            return
        body = json_body
        if body is None and data is not None:
            raw = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            start = raw.find("{")
            body, _ = json.JSONDecoder().raw_decode(raw[start:])
        self.jobs.append(body)

    def configurations(self, kind: str) -> list[dict]:
        return [job["configuration"] for job in self.jobs if kind in job["configuration"]]


@pytest.fixture
def recorder(monkeypatch):
    from google.auth.transport.requests import AuthorizedSession

    recorder = JobRecorder()
    original = AuthorizedSession.request

    def request(self, method, url, data=None, headers=None, **kwargs):
        recorder.record(method, url, data, kwargs.get("json"))
        return original(self, method, url, data=data, headers=headers, **kwargs)

    monkeypatch.setattr(AuthorizedSession, "request", request)
    return recorder


def test_jobs_carry_labels_and_byte_caps(bq_emulator, table, recorder):
    warehouse = BigQueryWarehouse(project=bq_emulator.project, api_endpoint=bq_emulator.url,
                                  max_bytes_billed=CAP)

    @dg.asset(key=["raw", "labelled"], partitions_def=parts.state_month_partitions)
    def labelled(context: dg.AssetExecutionContext, warehouse: Warehouse) -> None:
        pairs = [parts.split_key(key) for key in context.partition_keys]
        with warehouse.batch() as batch:
            for state, month in pairs:
                batch.replace(table, _rows(state, month, [f"{state}{month:%m}"]), [(state, month)])
        warehouse.query(f"SELECT count(*) AS n FROM {table}")

    result = dg.materialize([labelled], resources={"warehouse": warehouse},
                            partition_key=parts.partition_key("PA", M1))
    assert result.success
    loads, queries = recorder.configurations("load"), recorder.configurations("query")
    assert loads and len(queries) >= 2  # the transaction script and the read
    expected = {"app": "bdt-platform", "asset": "raw__labelled", "partition": "2024-01-01_pa",
                "run": result.run_id}
    for configuration in loads + queries:
        assert configuration["labels"] == expected
    for configuration in queries:
        assert int(configuration["query"]["maximumBytesBilled"]) == CAP
    script = next(c["query"]["query"] for c in queries if "BEGIN TRANSACTION" in c["query"]["query"])
    assert "DELETE FROM" in script and "INSERT INTO" in script and "COMMIT TRANSACTION" in script

    # A run over a rectangle of partitions labels its corners.
    recorder.jobs.clear()
    ranged = dg.materialize([labelled], resources={"warehouse": warehouse},
                            tags=parts.range_tags(["NJ", "PA"], [M1, M2]))
    assert ranged.success
    assert {c["labels"]["partition"] for c in recorder.configurations("query")} == {
        "2024-01-01_nj__2024-02-01_pa"}
    # Outside any asset the labels say so.
    recorder.jobs.clear()
    warehouse.query("SELECT 1 AS one")
    assert recorder.configurations("query")[0]["labels"] == {
        "app": "bdt-platform", "asset": "none", "partition": "none"}


def test_label_and_predicate_helpers():
    assert sanitize_label("Raw/Eligibility 2024-01-01|PA") == "raw_eligibility_2024-01-01_pa"
    assert len(sanitize_label("x" * 100)) == 63
    assert delete_predicate([("PA", M1), ("NJ", M1), ("PA", M2)]) == (
        "(month = DATE '2024-01-01' AND state IN ('NJ', 'PA')) OR "
        "(month = DATE '2024-02-01' AND state IN ('PA'))")
    with pytest.raises(ValueError):
        delete_predicate([("P'A", M1)])


def test_an_unreachable_bigquery_fails_after_retry_seconds_not_googles_ten_minutes():
    """Nothing listens on the port: Google's default retry would go on for 600 s per call."""
    import socket
    import time

    from bdt_platform.core.retries import transient_cause

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends
    warehouse = BigQueryWarehouse(project="bdt-test", api_endpoint=f"http://127.0.0.1:{port}",
                                  retry_seconds=3)
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        warehouse.query("SELECT 1 AS n")
    assert time.monotonic() - started < 30
    assert transient_cause(raised.value) is not None  # the step's retry policy takes it from here
