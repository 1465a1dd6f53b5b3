"""A read-only copy of the DuckDB warehouse for readers in other processes (the report site).

DuckDB admits one process with the file open for writing, and a reader in another process
holding the file would make ``bdt build`` / ``bdt ingest`` fail to open it. So the process that
writes publishes a snapshot at the end of its work (``publish``: checkpoint under the write lock,
copy, atomic rename), and readers open only the snapshot (``SnapshotReader``), picking up a newer
one between queries. A reader never touches the warehouse file; a writer never waits on a reader.
BigQuery has no such lock: there the site queries the warehouse itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import uuid
from pathlib import Path

import duckdb
import pandas as pd

SNAPSHOT_NAME = "warehouse.duckdb"  # the same file name: views name their catalog by it


def snapshot_path(site_dir: Path) -> Path:
    return Path(site_dir) / "snapshot" / SNAPSHOT_NAME


def publish(con: duckdb.DuckDBPyConnection, warehouse_path: Path, target: Path) -> Path:
    """Copy the warehouse to ``target`` atomically. ``con`` must be a read-write connection to
    ``warehouse_path`` (it holds the lock, so nobody writes during the copy)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    con.execute("CHECKPOINT")  # everything in the file itself, none of it in the WAL
    partial = target.parent / f".{uuid.uuid4().hex}.partial"
    try:
        shutil.copyfile(warehouse_path, partial)
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


class SnapshotMissing(RuntimeError):
    """No snapshot yet: nothing was built since the site's data layer existed."""


class SnapshotReader:
    """Read-only queries on the latest published snapshot (thread-safe: a cursor per query)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._stamp: tuple[int, int] | None = None

    def _current(self) -> duckdb.DuckDBPyConnection:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise SnapshotMissing(
                f"no warehouse snapshot at {self.path} yet: run `bdt build` (each build "
                "publishes the copy the report site reads)") from None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        with self._lock:
            if self._con is None or stamp != self._stamp:
                # The old connection is dropped, not closed: queries running on its cursors
                # finish on the old file (still readable after the rename), then it goes.
                self._con, self._stamp = self._open(), stamp
            return self._con

    def _open(self) -> duckdb.DuckDBPyConnection:
        # An in-memory database that attaches the file: ``duckdb.connect(path)`` would hand back
        # the process's cached instance of the *old* file. The catalog keeps the file's name,
        # which the views dbt created refer to.
        con = duckdb.connect(":memory:")
        con.execute(f"ATTACH '{self.path}' AS \"{self.path.stem}\" (READ_ONLY)")
        con.execute(f'USE "{self.path.stem}"')
        return con

    def refresh(self) -> None:
        self._current()

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        cursor = self._current().cursor()
        try:
            cursor.execute(f'USE "{self.path.stem}"')  # a cursor starts in the default catalog
            return cursor.execute(sql, params or []).df()
        finally:
            cursor.close()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
