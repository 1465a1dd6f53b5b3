"""The warehouse writer: replace whole (state, month) partitions of a table atomically.

Dagster's DB IO managers cannot write a run that spans several states *and* several months
(toolchain.md), so loads use this small writer instead: within one transaction it deletes the
batch's (state, month) pairs and inserts the new rows. Re-loading a partition therefore replaces
it (never duplicates), and a failed run rolls back and leaves the tables as they were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable, Iterator

import dagster as dg
import duckdb
import pandas as pd
import pyarrow as pa


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse's write lock (DuckDB allows one writing process)."""


class WarehouseBatch:
    """An open transaction; each :meth:`replace` swaps one table's partitions.

    Only partitions that have rows are deleted: those the table held when the batch first
    touched it, and those this batch wrote before. A first load of a year (2,448 files in
    37 chunks) then deletes nothing, instead of scanning the table it is filling once per
    chunk."""

    def __init__(self, connection: duckdb.DuckDBPyConnection):
        self._connection = connection
        self._filled: dict[str, set[tuple[str, dt.date]]] = {}  # per table: partitions with rows

    def replace(self, table: str, rows: pa.Table, partitions: Iterable[tuple[str, dt.date]]) -> int:
        schema, _, name = table.partition(".")
        con = self._connection
        partitions = list(partitions)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        con.register("_bdt_rows", rows)
        try:
            con.execute(f'CREATE TABLE IF NOT EXISTS "{schema}"."{name}" AS '
                        "SELECT * FROM _bdt_rows LIMIT 0")
            filled = self._filled.get(table)
            if filled is None:
                filled = self._filled[table] = {
                    (state, month) for state, month in con.execute(
                        f'SELECT DISTINCT state, month FROM "{schema}"."{name}"').fetchall()}
            stale = [(state, month) for state, month in partitions if (state, month) in filled]
            if stale:
                keys = pa.table({"state": pa.array([p[0] for p in stale], pa.string()),
                                 "month": pa.array([p[1] for p in stale], pa.date32())})
                con.register("_bdt_keys", keys)
                con.execute(f'DELETE FROM "{schema}"."{name}" AS t USING _bdt_keys AS k '
                            "WHERE t.state = k.state AND t.month = k.month")
            con.execute(f'INSERT INTO "{schema}"."{name}" BY NAME SELECT * FROM _bdt_rows')
            filled.update(partitions)
        finally:
            con.unregister("_bdt_rows")
            with contextlib.suppress(Exception):
                con.unregister("_bdt_keys")
        return rows.num_rows


class Warehouse(dg.ConfigurableResource):
    """What assets need from a warehouse, whatever the backend: replace partitions atomically
    (``batch``/``replace_partitions``), run a query into a DataFrame, and say what exists.
    Column names are lower-case on every backend, so dbt models see the same names."""

    def batch(self):
        raise NotImplementedError

    def replace_partitions(self, table: str, rows: pa.Table,
                           partitions: Iterable[tuple[str, dt.date]]) -> int:
        with self.batch() as batch:
            return batch.replace(table, rows, list(partitions))

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


class DuckDBWarehouse(Warehouse):
    """The embedded warehouse: one DuckDB file (``$BDT_HOME/warehouse.duckdb``)."""

    path: str

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
        """One transaction: every replace inside commits together or not at all."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield WarehouseBatch(con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def table_exists(self, table: str) -> bool:
        schema, _, name = table.partition(".")
        found = self.query("SELECT count(*) AS n FROM information_schema.tables "
                           "WHERE table_schema = ? AND table_name = ?", [schema, name])
        return bool(found["n"].iloc[0])
