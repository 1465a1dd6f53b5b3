"""The production warehouse: BigQuery, behind the same :class:`Warehouse` interface as DuckDB.

- **Tables we create** (``raw.*``, ``reports.*``) are created through the API from the Arrow
  schema of their first batch: lower-case column names, DATE / TIMESTAMP / INT64 / FLOAT64 / BOOL /
  STRING as in DuckDB, and - when they have ``month`` (DATE) and ``state`` columns - partitioned
  by ``month`` (MONTH) and clustered by ``state``.
- **Partition replace** (``batch().replace``): when the batch closes, each table's rows are loaded
  as Parquet into one scratch table (it expires after a day should the process die), then one
  multi-statement transaction deletes the batch's (state, month) pairs and inserts the new rows,
  for every table of the batch. Retrying a load therefore never duplicates rows, other partitions
  are untouched, and a failure leaves every table as it was. Scratch tables are dropped afterwards.
- **Cost guardrails**: every job carries labels (``app``, ``asset``, ``partition``, ``run``, taken
  from the running Dagster asset when there is one, sanitized to BigQuery's label rules) and every
  query job ``maximum_bytes_billed`` (load jobs are not billed by bytes).
- **Reads** use the REST API (``create_bqstorage_client=False``), never the Storage Read API, and
  return the same pandas dtypes DuckDB does (int64, float64, datetime64 for DATE).
- **Unreachable**: every API call and job wait retries a refused, reset or timed-out connection
  (and Google's 5xx) for at most ``retry_seconds`` (``BDT_BQ_RETRY_SECONDS``, default 300; the
  client library's own default is 600 s per call), then raises, and the step's retry policy
  takes over (``core/retries.py``).
- **Endpoint**: ``api_endpoint`` (from ``BIGQUERY_EMULATOR_HOST``, passed in by ``resources.py``)
  points the client at an emulator with anonymous credentials; otherwise dagster-gcp's
  ``BigQueryResource`` makes the client with application-default credentials.

Datasets ``raw``, ``staging``, ``intermediate``, ``marts`` and ``reports`` are created on first
use if missing (in ``location``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import re
import uuid
import warnings
from collections.abc import Iterable, Iterator

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from bdt_platform.core.settings import DEFAULT_BQ_MAX_BYTES_BILLED, DEFAULT_BQ_RETRY_SECONDS
from bdt_platform.storage.staged_rows import StagedRows
from bdt_platform.storage.warehouse import Warehouse, slice_columns

DATASETS = ("raw", "staging", "intermediate", "marts", "semantic", "reports", "usage", "outreach",
            "ml")
SCRATCH_PREFIX = "_bdt_load_"
SCRATCH_LIFETIME = dt.timedelta(days=1)
APP_LABEL = "bdt-platform"
_STATE = re.compile(r"^[A-Z]{2}$")
_PARTNER = re.compile(r"^[a-z0-9]+$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- labels ----------------------------------------------------------------------------------------

def sanitize_label(value: str) -> str:
    """A legal BigQuery label value: lower-case letters, digits, ``_`` and ``-``, at most 63."""
    text = re.sub(r"[^a-z0-9_-]", "_", str(value).strip().lower())
    return text[:63] or "none"


def _partition_label(context) -> str:
    """``2024-01-01_pa``; a run over a rectangle of partitions: ``<first>__<last>``."""
    def key(text) -> str:
        return str(text).replace("|", "_")

    try:
        tags = context.run.tags
        start = tags.get("dagster/asset_partition_range_start")
        end = tags.get("dagster/asset_partition_range_end")
        if start and end:
            return key(start) if start == end else f"{key(start)}__{key(end)}"
        if context.has_partition_key:
            return key(context.partition_key)
        keys = list(context.partition_keys)
        if keys:
            return key(keys[0]) if len(keys) == 1 else f"{key(keys[0])}__{key(keys[-1])}"
    except Exception:  # noqa: BLE001 - a label is never worth failing a run
        pass
    return "none"


def job_labels() -> dict[str, str]:
    """``app``/``asset``/``partition``/``run`` of the Dagster asset running now, if any."""
    labels = {"app": APP_LABEL, "asset": "none", "partition": "none"}
    try:
        context = dg.AssetExecutionContext.get()
    except Exception:  # noqa: BLE001 - outside a run (CLI helpers, tests)
        return labels
    try:
        keys = sorted(context.selected_asset_keys, key=lambda k: k.to_user_string())
        asset = "__".join(keys[0].path) if len(keys) == 1 else context.op_def.name
    except Exception:  # noqa: BLE001
        asset = "none"
    labels.update({"asset": asset, "partition": _partition_label(context),
                   "run": context.run_id})
    return {sanitize_label(k): sanitize_label(v) for k, v in labels.items()}


# -- types -----------------------------------------------------------------------------------------

#: Arrow type tests, in order, and the BigQuery column type each gives (what DuckDB would store).
_BIGQUERY_TYPES = (
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t),
     "STRING"),
    (pa.types.is_date, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
    (pa.types.is_boolean, "BOOL"),
    (pa.types.is_integer, "INT64"),
    (pa.types.is_floating, "FLOAT64"),
    (pa.types.is_decimal, "NUMERIC"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "BYTES"),
)


def bigquery_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type for an Arrow type (what DuckDB would store)."""
    for matches, name in _BIGQUERY_TYPES:
        if matches(arrow_type):
            return name
    raise TypeError(f"no BigQuery column type for Arrow type {arrow_type}")


def normalize(rows: pa.Table) -> pa.Table:
    """Lower-case names; null columns as strings; timestamps as UTC microseconds; ints as int64."""
    fields, arrays = [], []
    for field, column in zip(rows.schema, rows.columns):
        target = field.type
        if pa.types.is_null(target) or pa.types.is_large_string(target):
            target = pa.string()
        elif pa.types.is_timestamp(target):
            target = pa.timestamp("us", tz="UTC")  # naive values are taken as UTC
        elif pa.types.is_integer(target):
            target = pa.int64()
        elif pa.types.is_floating(target):
            target = pa.float64()
        elif pa.types.is_date(target):
            target = pa.date32()
        if not _IDENTIFIER.match(field.name):
            raise ValueError(f"column name {field.name!r} is not a valid BigQuery column name")
        fields.append(pa.field(field.name.lower(), target))
        arrays.append(column.cast(target) if target != field.type else column)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def table_schema(rows: pa.Table) -> list[bigquery.SchemaField]:
    return [bigquery.SchemaField(f.name, bigquery_type(f.type)) for f in rows.schema]


def _split_table(table: str) -> tuple[str, str]:
    dataset, _, name = table.partition(".")
    if not (dataset and name and _IDENTIFIER.match(dataset) and _IDENTIFIER.match(name)):
        raise ValueError(f"table must be dataset.name, got {table!r}")
    return dataset, name


def delete_predicate(partitions: Iterable[tuple]) -> str:
    """``(month = DATE 'm' AND state IN ('..')) OR ...`` for (state, month) pairs, or
    ``(month = DATE 'm' AND state = 'XX' AND _partner IN ('..')) OR ...`` for (state, month,
    partner) slices of a partner feed's table."""
    partitions = list(partitions)
    if slice_columns(partitions)[-1] == "_partner":
        by_pair: dict[tuple[dt.date, str], set[str]] = {}
        for state, month, partner in partitions:
            if not _STATE.match(state):
                raise ValueError(f"not a state code: {state!r}")
            if not _PARTNER.match(partner):
                raise ValueError(f"not a partner name: {partner!r}")
            by_pair.setdefault((_as_date(month), state), set()).add(partner)
        return " OR ".join(
            f"(month = DATE '{month.isoformat()}' AND state = '{state}' AND _partner IN "
            f"({', '.join(repr(p) for p in sorted(partners))}))"
            for (month, state), partners in sorted(by_pair.items()))
    by_month: dict[dt.date, set[str]] = {}
    for state, month in partitions:
        if not _STATE.match(state):
            raise ValueError(f"not a state code: {state!r}")
        by_month.setdefault(_as_date(month), set()).add(state)
    return " OR ".join(
        f"(month = DATE '{month.isoformat()}' AND state IN "
        f"({', '.join(repr(s) for s in sorted(states))}))"
        for month, states in sorted(by_month.items()))


# -- client ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _client(project: str, location: str | None, api_endpoint: str | None) -> bigquery.Client:
    if api_endpoint:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, location=location,
                               credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=api_endpoint))
    from dagster_gcp import BigQueryResource

    with BigQueryResource(project=project, location=location).get_client() as client:
        return client


_READY_DATASETS: set[tuple[str, str | None, str]] = set()


class BigQueryBatch:
    """Collects each :meth:`replace`; :meth:`commit` loads one scratch table per target table and
    swaps every table's partitions in one transaction. (One load job per table and run, not per
    partition: a backfill of hundreds of partitions stays a handful of jobs.)"""

    def __init__(self, warehouse: BigQueryWarehouse):
        self._warehouse = warehouse
        self._pending: dict[str, tuple[list[pa.Table], set[tuple]]] = {}
        self.scratch_tables: list[str] = []

    def replace(self, table: str, rows: pa.Table | StagedRows,
                partitions: Iterable[tuple]) -> int:
        dataset, name = _split_table(table)
        if isinstance(rows, StagedRows):
            # One load job per table and run takes every row of the run (``commit``): spilled
            # rows are read back into memory here.
            staged, rows = rows, rows.read_all()
            staged.discard()
        rows = normalize(rows)
        pairs = {(key[0], _as_date(key[1]), *key[2:]) for key in partitions}
        staged, covered = self._pending.setdefault(f"{dataset}.{name}", ([], set()))
        if pairs & covered:  # replaced again within the batch: the last rows win, as in DuckDB
            staged[:] = [_without(part, pairs) for part in staged]
        staged.append(rows)
        covered |= pairs
        return rows.num_rows

    def commit(self) -> None:
        statements = []
        for table, (staged, covered) in self._pending.items():
            dataset, name = _split_table(table)
            rows = pa.concat_tables(staged, promote_options="default")
            target = self._warehouse.ensure_table(table, rows)
            if covered:
                statements.append(f"DELETE FROM `{target}` WHERE {delete_predicate(covered)};")
            if rows.num_rows:
                scratch = self._warehouse.load_scratch(dataset, name, rows)
                self.scratch_tables.append(scratch)
                columns = ", ".join(f"`{c}`" for c in rows.column_names)
                statements.append(
                    f"INSERT INTO `{target}` ({columns}) SELECT {columns} FROM `{scratch}`;")
        if statements:
            self._warehouse.run("\n".join(["BEGIN TRANSACTION;", *statements,
                                           "COMMIT TRANSACTION;"]))


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _without(rows: pa.Table, pairs: set[tuple]) -> pa.Table:
    """``rows`` minus those whose (state, month) - or (state, month, _partner), for slices -
    is in ``pairs``."""
    if not rows.num_rows or not pairs:
        return rows
    columns = slice_columns(list(pairs))
    keep = [key not in pairs for key in
            zip(*(rows.column(c).to_pylist() for c in columns))]
    return rows.filter(pa.array(keep, pa.bool_()))


class BigQueryWarehouse(Warehouse):
    """The production warehouse: datasets ``raw``, ``staging``, ``intermediate``, ``marts``,
    ``reports`` in ``project``."""

    project: str
    location: str | None = None
    max_bytes_billed: int = DEFAULT_BQ_MAX_BYTES_BILLED
    # An emulator's URL (BIGQUERY_EMULATOR_HOST); None for Google's endpoint.
    api_endpoint: str | None = None
    # How long a call keeps retrying while BigQuery cannot be reached (BDT_BQ_RETRY_SECONDS).
    retry_seconds: int = DEFAULT_BQ_RETRY_SECONDS

    # -- plumbing ----------------------------------------------------------------------------------

    @property
    def retry(self):
        """Google's default retry (connection errors, 5xx, rate limits), bounded by
        ``retry_seconds`` instead of its 600 s."""
        return bigquery.DEFAULT_RETRY.with_timeout(self.retry_seconds)

    def client(self) -> bigquery.Client:
        client = _client(self.project, self.location, self.api_endpoint)
        ready = (self.project, self.location, self.api_endpoint or "")
        if ready not in _READY_DATASETS:
            for name in DATASETS:
                dataset = bigquery.Dataset(f"{self.project}.{name}")
                if self.location:
                    dataset.location = self.location
                client.create_dataset(dataset, exists_ok=True, retry=self.retry)
            _READY_DATASETS.add(ready)
        return client

    def query_config(self, **kwargs) -> bigquery.QueryJobConfig:
        return bigquery.QueryJobConfig(labels=job_labels(),
                                       maximum_bytes_billed=self.max_bytes_billed, **kwargs)

    def run(self, sql: str, params: list | None = None) -> bigquery.table.RowIterator:
        config = self.query_config(query_parameters=[_parameter(v) for v in params or []])
        return self.client().query(sql, job_config=config, retry=self.retry).result(
            retry=self.retry)

    def ensure_table(self, table: str, rows: pa.Table) -> str:
        """``project.dataset.name``, created through the API from ``rows``' schema if missing."""
        dataset, name = _split_table(table)
        full = f"{self.project}.{dataset}.{name}"
        client = self.client()
        try:
            client.get_table(full, retry=self.retry)
        except NotFound:
            created = bigquery.Table(full, schema=table_schema(rows))
            types = {f.name: f.type for f in rows.schema}
            if pa.types.is_date(types.get("month", pa.null())) and pa.types.is_string(
                    types.get("state", pa.null())):
                created.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.MONTH, field="month")
                created.clustering_fields = ["state"]
            client.create_table(created, exists_ok=True, retry=self.retry)
        return full

    def load_scratch(self, dataset: str, name: str, rows: pa.Table) -> str:
        """Load ``rows`` as Parquet into a new scratch table; returns its full id."""
        client = self.client()
        scratch = f"{self.project}.{dataset}.{SCRATCH_PREFIX}{name}_{uuid.uuid4().hex[:12]}"
        table = bigquery.Table(scratch, schema=table_schema(rows))
        table.expires = dt.datetime.now(dt.timezone.utc) + SCRATCH_LIFETIME
        client.create_table(table, retry=self.retry)
        buffer = io.BytesIO()
        pq.write_table(rows, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                                        schema=table_schema(rows), labels=job_labels())
        client.load_table_from_file(buffer, scratch, job_config=config).result(retry=self.retry)
        return scratch

    # -- the Warehouse interface -------------------------------------------------------------------

    def replace_table(self, table: str, rows: pa.Table) -> None:
        """One ``WRITE_TRUNCATE`` load job: BigQuery swaps the table's data (and schema) when
        the job succeeds, and leaves it as it was when it fails."""
        rows = normalize(rows)
        target = self.ensure_table(table, rows)
        buffer = io.BytesIO()
        pq.write_table(rows, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                                        schema=table_schema(rows), labels=job_labels())
        self.client().load_table_from_file(buffer, target, job_config=config).result(
            retry=self.retry)

    @contextlib.contextmanager
    def batch(self) -> Iterator[BigQueryBatch]:
        """Every replace inside commits together (one transaction) or not at all."""
        batch = BigQueryBatch(self)
        try:
            yield batch
            batch.commit()
        finally:
            for scratch in batch.scratch_tables:
                with contextlib.suppress(Exception):
                    self.client().delete_table(scratch, not_found_ok=True, retry=self.retry)

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        rows = self.run(sql, params)
        with warnings.catch_warnings():  # "use pandas-gbq instead": this is the REST read we want
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            return rows.to_dataframe(create_bqstorage_client=False, bool_dtype=None,
                                     int_dtype=None, float_dtype=None, string_dtype=None,
                                     date_dtype=None)

    def table_exists(self, table: str) -> bool:
        dataset, name = _split_table(table)
        try:
            self.client().get_table(f"{self.project}.{dataset}.{name}", retry=self.retry)
        except NotFound:
            return False
        return True


def _parameter(value) -> bigquery.ScalarQueryParameter | bigquery.ArrayQueryParameter:
    """A positional (``?``) query parameter, typed like DuckDB would bind it."""
    if isinstance(value, (list, tuple)):
        kinds = {_parameter(v).type_ for v in value} or {"STRING"}
        return bigquery.ArrayQueryParameter(None, kinds.pop(), list(value))
    if isinstance(value, bool):
        kind = "BOOL"
    elif isinstance(value, int):
        kind = "INT64"
    elif isinstance(value, float):
        kind = "FLOAT64"
    elif isinstance(value, dt.datetime):
        kind = "TIMESTAMP"
    elif isinstance(value, dt.date):
        kind = "DATE"
    else:
        kind, value = "STRING", None if value is None else str(value)
    return bigquery.ScalarQueryParameter(None, kind, value)
