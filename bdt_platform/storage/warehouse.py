"""The warehouse writer: replace (state, month) partitions of a table atomically.

Dagster's DB IO managers cannot write a run that spans several states *and* several months
(toolchain.md), so loads use this small writer instead: within one transaction it deletes the
batch's (state, month) pairs and inserts the new rows. Re-loading a partition therefore replaces
it (never duplicates), and a failed run rolls back and leaves the tables as they were.

A partner feed's partition holds the rows of several partners side by side: its loads name
(state, month, partner) slices, and a slice replaces only that partner's rows (``_partner``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa

from bdt_platform.storage.staged_rows import StagedRows


#: DuckDB threads of a load's connection (``DuckDBWarehouse.batch``).
LOAD_THREADS = 1
#: DuckDB settings of a load (``DuckDBWarehouse.batch``), each put back when it ends (they are
#: the database's, not the connection's):
#: - one thread: the run's other work (its workers) has the other cores; with two, DuckDB spent
#:   30-45% more CPU on the same inserts;
#: - rows written to the file a row group (122,880 rows) at a time, as they are inserted, by the
#:   batch's writer thread: by default DuckDB keeps five row groups of each table in memory
#:   until then, so a year's load compressed and wrote most of its rows in ``COMMIT``, on the
#:   run's main thread (0.7 s of 1.1 s in a test of a year's four tables; 0.2 s after), and
#:   held them in memory until it did (about the Arrow size of the rows: +123 MB for a 116 MB
#:   partition).
LOAD_SETTINGS = {"threads": LOAD_THREADS, "write_buffer_row_group_count": 1}


#: The Dagster concurrency pool of every step that opens the warehouse (its limit, 1, is in
#: bdt's dagster.yaml: ``core/runs.CONCURRENCY``): DuckDB lets one process hold the file.
WAREHOUSE_POOL = "warehouse"


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse's write lock (DuckDB allows one writing process)."""


class WarehouseBatch:
    """An open transaction; each :meth:`replace` swaps one table's partitions.

    Only partitions that have rows are deleted: those the table held when the batch first
    touched it, and those this batch wrote before. A first load of a year (2,448 files in
    37 chunks) then deletes nothing, instead of scanning the table it is filling once per
    chunk.

    Each replace is done by the batch's writer thread, in the order asked, while
    the caller goes on (DuckDB releases Python's lock while it writes: a loader records one
    chunk's materializations and reads the next while the last one is written). At most
    ``WRITES_QUEUED`` replaces wait (each holds its rows); :meth:`finish` waits for all of them
    and raises the first error, which :meth:`replace` also raises as soon as it is known."""

    WRITES_QUEUED = 2

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self._connection = connection
        self._filled: dict[str, set[tuple]] = {}  # per table: partitions (or slices) with rows
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="bdt-warehouse-writer")
        self._writes: deque[Future] = deque()

    def replace(self, table: str, rows: pa.Table | StagedRows,
                partitions: Iterable[tuple]) -> int:
        """Have ``table``'s ``partitions`` replaced by ``rows``; staged rows are read (and
        their spilled files deleted) as they are written. ``partitions`` are (state, month)
        pairs, or (state, month, partner) slices of a partner feed's table (``_partner``)."""
        partitions = list(partitions)
        while self._writes and (self._writes[0].done()
                                or len(self._writes) >= self.WRITES_QUEUED):
            self._writes.popleft().result()  # an earlier write's error is raised here
        self._writes.append(self._writer.submit(self._replace, table, rows, partitions))
        return rows.num_rows

    def finish(self) -> None:
        """Wait until every replace is written; raise the first one's error."""
        while self._writes:
            self._writes.popleft().result()

    def close(self) -> None:
        """Stop the writer thread: replaces not started are dropped, a running one ends first
        (the connection is not used by two threads at once)."""
        self._writer.shutdown(wait=True, cancel_futures=True)
        self._writes.clear()

    def _replace(self, table: str, rows: pa.Table | StagedRows,
                 partitions: list[tuple]) -> int:
        try:
            return self._write(table, rows, partitions)
        finally:
            if isinstance(rows, StagedRows):
                rows.discard()

    def _write(self, table: str, rows: pa.Table | StagedRows,
               partitions: list[tuple]) -> int:
        schema, _, name = table.partition(".")
        con = self._connection
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        # Staged rows with a spilled part are inserted from a reader (a spilled file is read a
        # batch at a time); tables in memory as they are.
        if isinstance(rows, StagedRows):
            source = (rows.reader() if rows.spilled
                      else pa.concat_tables(rows.parts))  # (no copy)
        else:
            source = rows
        con.register("_bdt_rows", source)
        con.register("_bdt_columns", rows.schema.empty_table())
        try:
            con.execute(f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" AS '
                        "SELECT * FROM _bdt_columns")
            key_columns = slice_columns(partitions)
            filled = self._filled.get(table)
            if filled is None:
                _add_missing_columns(con, schema, name, rows.schema)
                columns = ", ".join(key_columns)
                filled = self._filled[table] = set(con.execute(
                    f'SELECT DISTINCT {columns} FROM "{schema}"."{name}"').fetchall())
            stale = [key for key in partitions if key in filled]
            if stale:
                keys = pa.table({
                    column: pa.array([key[i] for key in stale],
                                     pa.date32() if column == "month" else pa.string())
                    for i, column in enumerate(key_columns)})
                con.register("_bdt_keys", keys)
                match = " AND ".join(f"t.{c} = k.{c}" for c in key_columns)
                con.execute(f'DELETE FROM "{schema}"."{name}" AS t USING _bdt_keys AS k '
                            f"WHERE {match}")
            con.execute(f'INSERT INTO "{schema}"."{name}" BY NAME SELECT * FROM _bdt_rows')
            filled.update(partitions)
        finally:
            # After a failed statement the transaction is aborted and so is unregistering:
            # the statement's own error is the one to raise.
            for view in ("_bdt_rows", "_bdt_columns", "_bdt_keys"):
                with contextlib.suppress(duckdb.Error):
                    con.unregister(view)
        return rows.num_rows


def slice_columns(partitions: list[tuple]) -> tuple[str, ...]:
    """The columns a replace matches on: ``state, month``, and ``_partner`` for slices."""
    sizes = {len(key) for key in partitions}
    if len(sizes) > 1 or not sizes <= {2, 3}:
        raise ValueError("partitions must all be (state, month) pairs or all (state, month, "
                         f"partner) slices, got sizes {sorted(sizes)}")
    return ("state", "month", "_partner") if sizes == {3} else ("state", "month")


#: Columns that tables made by an earlier version lack, added (as NULLs) on their next load:
#: ``_partner`` (several partners per feed) and the metrics ``reports.outcomes`` gained with the
#: metric layer. Any other column a table lacks is an error.
ADDED_COLUMNS = {"_partner": "VARCHAR", "pieces_returned": "BIGINT", "decisions": "BIGINT",
                 "mail_cost_usd": "DOUBLE", "mail_return_rate": "DOUBLE",
                 "enrollments_per_1000_mailed": "DOUBLE", "cost_per_enrollment": "DOUBLE",
                 "days_mailing_to_application": "DOUBLE"}


def _add_missing_columns(con: duckdb.DuckDBPyConnection, schema: str, name: str,
                         wanted: pa.Schema) -> None:
    """Add the ``ADDED_COLUMNS`` that the rows have and an older table lacks."""
    missing = [c for c in ADDED_COLUMNS if c in wanted.names]
    if not missing:
        return
    have = {row[0] for row in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND "
        "table_name = ?", [schema, name]).fetchall()}
    for column in missing:
        if column not in have:
            con.execute(f'ALTER TABLE "{schema}"."{name}" ADD COLUMN "{column}" '
                        f"{ADDED_COLUMNS[column]}")


class Warehouse(dg.ConfigurableResource):
    """What assets need from a warehouse, whatever the backend: replace partitions atomically
    (``batch``/``replace_partitions``), run a query into a DataFrame, and say what exists.
    Column names are lower-case on every backend, so dbt models see the same names."""

    def batch(self):
        raise NotImplementedError

    def replace_partitions(self, table: str, rows: pa.Table,
                           partitions: Iterable[tuple]) -> int:
        with self.batch() as batch:
            return batch.replace(table, rows, list(partitions))

    def replace_table(self, table: str, rows: pa.Table) -> None:
        """Replace the whole (unpartitioned) ``table`` with ``rows``, all at once: a reader
        sees the old table or the new one, never a part (readouts, usage copies)."""
        raise NotImplementedError

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        raise NotImplementedError

    def table_exists(self, table: str) -> bool:
        raise NotImplementedError

    def partitions(self, table: str) -> set[tuple[str, dt.date]]:
        """The (state, month) pairs that have rows in ``table``."""
        if not self.table_exists(table):
            return set()
        frame = self.query(f"SELECT DISTINCT state, month FROM {table}")
        return {(row.state, pd.Timestamp(row.month).date()) for row in frame.itertuples()}

    def partitions_of(self, tables: list[str]) -> set[tuple[str, dt.date]]:
        """The (state, month) pairs that have rows in any of ``tables``."""
        found: set[tuple[str, dt.date]] = set()
        for table in tables:
            found |= self.partitions(table)
        return found


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: one DuckDB file (``$BDT_HOME/warehouse.duckdb``)."""

    path: str
    #: Where ``publish_snapshot`` puts the read-only copy other processes read (the report
    #: site, ``metrics/snapshot.py``); None: no snapshot.
    snapshot_path: str | None = None

    def publish_snapshot(self) -> str | None:
        """Copy the warehouse to ``snapshot_path`` atomically (under the write lock, so no
        other process writes meanwhile); the path, or None when there is no snapshot."""
        if not self.snapshot_path or not Path(self.path).exists():
            return None
        from bdt_platform.metrics.snapshot import publish

        with self.connect() as con:
            return str(publish(con, Path(self.path), Path(self.snapshot_path)))

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        # Short-lived connections: dbt runs in its own process and needs the file's write lock.
        from pathlib import Path

        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            raise WarehouseBusy(f"warehouse {self.path} is in use by another process: "
                                f"{str(exc).splitlines()[0]}") from exc
        try:
            yield con
        finally:
            con.close()

    @contextlib.contextmanager
    def batch(self) -> Iterator[WarehouseBatch]:
        """One transaction: every replace inside commits together or not at all. The replaces
        are written by a thread of their own while the caller goes on (``WarehouseBatch``)."""
        with self.connect() as con:
            before = {name: con.execute(f"SELECT current_setting('{name}')").fetchone()[0]
                      for name in LOAD_SETTINGS}
            for name, value in LOAD_SETTINGS.items():
                con.execute(f"SET {name} = {int(value)}")
            try:
                con.execute("BEGIN TRANSACTION")
                batch = WarehouseBatch(con)
                try:
                    yield batch
                    batch.finish()
                except BaseException:
                    batch.close()
                    con.execute("ROLLBACK")
                    raise
                batch.close()
                con.execute("COMMIT")
            finally:
                for name, value in before.items():  # for any other connection to the database
                    with contextlib.suppress(duckdb.Error):
                        con.execute(f"SET {name} = {int(value)}")

    def replace_table(self, table: str, rows: pa.Table) -> None:
        schema, _, name = table.partition(".")
        with self.connect() as con:
            con.register("_bdt_replacement", rows)
            try:
                con.execute("BEGIN TRANSACTION")
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{name}" AS '
                            "SELECT * FROM _bdt_replacement")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("_bdt_replacement")

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def partitions_of(self, tables: list[str]) -> set[tuple[str, dt.date]]:
        """As the base class's, in one connection and one query (each connection opens the
        file: 14 of them were a third of a second of every ``bdt build``)."""
        with self.connect() as con:
            existing = {f"{schema}.{name}" for schema, name in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}
            present = [table for table in tables if table in existing]
            if not present:
                return set()
            rows = con.execute(" UNION ".join(f"SELECT DISTINCT state, month FROM {table}"
                                              for table in present)).fetchall()
        return {(state, pd.Timestamp(month).date()) for state, month in rows}

    def table_exists(self, table: str) -> bool:
        schema, _, name = table.partition(".")
        found = self.query("SELECT count(*) AS n FROM information_schema.tables "
                           "WHERE table_schema = ? AND table_name = ?", [schema, name])
        return bool(found["n"].iloc[0])
