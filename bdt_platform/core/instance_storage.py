"""The local Dagster instance's storage: Dagster's own SQLite storage, with connections kept.

Every partition a run materializes is one asset event (the provenance ``bdt explain`` reads), so a
year of 51 states writes thousands of them. Dagster's stock SQLite event log builds a new
SQLAlchemy engine for every write (so every statement is compiled again), opens and closes the
file twice per asset event (the run's shard and the cross-run index), and commits with a full
sync: about 20-24 ms of each event here, more than the data work of most partitions.

``PooledSqliteStorage`` is ``DagsterSqliteStorage`` with one change: its event log keeps one
engine (with its compiled-statement cache and one open connection) per shard, and runs the shards
in SQLite's write-ahead-log mode with ``synchronous=NORMAL`` (SQLite's recommended setting for
WAL: a committed event survives a crash of the process; a power cut can lose the last few, never
corrupt the file). Files, tables and layout are Dagster's own, so a home written by either class
reads with the other, and ``dagster-webserver`` reads it while a run writes (its live run view
watches the shard's write-ahead log too, where a kept connection writes).

Dagster checks or stamps each SQLite file's schema revision with alembic (the runs, schedules and
index files when a home is new, and every run's own shard), and each time alembic read Dagster's
~90 migration scripts again: 9 times for a new home and its first run (an instance in a new home
took 0.49-0.52 s to create, 0.33-0.34 s with them read once). ``keep_alembic_scripts`` has this
process read them once (the scripts cannot change while it runs).

Production uses PostgreSQL instance storage (dagster-postgres); this is the embedded default only.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

from alembic.config import Config
from alembic.script import ScriptDirectory
from dagster._core.errors import DagsterInvariantViolationError
from dagster._core.events import ASSET_EVENTS
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME, SqliteEventLogStorage, SqliteEventLogStorageWatchdog)
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

_ALEMBIC_FROM_CONFIG = ScriptDirectory.from_config.__func__
_kept_scripts: dict[tuple, ScriptDirectory] = {}
_kept_scripts_lock = threading.Lock()


def _kept_script_directory(cls, config: Config) -> ScriptDirectory:
    """``ScriptDirectory.from_config``, read once per process for the same scripts and
    options (every Dagster storage module's config names the same scripts)."""
    key = (cls, config.get_alembic_option("script_location"),
           tuple(config.get_version_locations_list() or ()),
           config.get_alembic_option("file_template"),
           config.get_alembic_boolean_option("sourceless"),
           config.get_alembic_boolean_option("recursive_version_locations"),
           tuple(sorted(config.messaging_opts.items())))
    with _kept_scripts_lock:
        script = _kept_scripts.get(key)
        if script is None:
            script = _kept_scripts[key] = _ALEMBIC_FROM_CONFIG(cls, config)
        return script


def keep_alembic_scripts() -> None:
    """Have alembic read its migration scripts once per process (see the module docstring)."""
    ScriptDirectory.from_config = classmethod(_kept_script_directory)


keep_alembic_scripts()

#: Shards whose engine (and open connection) a process keeps. A run writes its own shard and the
#: index; the web server reads many runs' shards, so the least recently used ones are closed.
KEPT_SHARDS = 16


def _set_pragmas(dbapi_connection, _connection_record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's sharded SQLite event log, keeping one engine and connection per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables_present: set[str] = set()
        self._asset_key_index_cols = False
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.get(shard)
            if engine is not None:
                self._engines.move_to_end(shard)
                return engine
            engine = create_engine(self.conn_string_for_shard(shard), pool_size=1,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            event.listen(engine, "connect", _set_pragmas)
            self._engines[shard] = engine
            while len(self._engines) > KEPT_SHARDS:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    def _has_asset_key_index_cols_on_connection(self, conn: Connection) -> bool:
        # Asked (with a schema inspection) for every asset event; migrations only add columns.
        if self._asset_key_index_cols:
            return True
        self._asset_key_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_key_index_cols

    def has_table(self, table_name: str) -> bool:
        # Dagster asks this of the index for every asset event (is a migration's table there?);
        # the stock class builds an engine to answer. Tables are never dropped while in use.
        if table_name in self._tables_present:
            return True
        engine = self._engine(INDEX_SHARD_NAME)
        with engine.connect() as conn:
            present = bool(engine.dialect.has_table(conn, table_name))
        if present:
            self._tables_present.add(table_name)
        return present

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Same contract as the parent: one connection at a time per storage, the shard's tables
        # created on first use, one transaction per block.
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def store_event_batch(self, events) -> None:
        """A batch of asset events (Dagster batches the per-partition materializations of a
        range output when ``DAGSTER_EVENT_BATCH_SIZE`` is set; ``partition_events`` batches
        logged ones): the same rows as ``store_event`` one by one, in one transaction on the
        run's shard and one on the index instead of two per event, each a single multi-row
        statement (the index's returns the new event ids, in order). The asset's row (its latest
        materialization) is written once per asset: a materialization followed by a later one
        of the same asset in the batch would be overwritten column for column. Anything else
        is stored one by one, as before."""
        run_ids = {event.run_id for event in events}
        if len(run_ids) != 1 or not all(
                event.is_dagster_event and event.dagster_event_type in ASSET_EVENTS
                for event in events):
            for event in events:
                self.store_event(event)
            return
        rows = [self._event_to_row(event) for event in events]  # each event serialized once
        superseded = _superseded_materializations(events)
        with self.run_connection(run_ids.pop()) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)  # one executemany
        with self.index_transaction() as conn:
            # One multi-row insert that returns each row's id, in the order of ``rows``.
            event_ids = conn.execute(
                SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id,
                                                           sort_by_parameter_order=True),
                rows).scalars().all()
            if len(event_ids) != len(events) or None in event_ids:
                raise DagsterInvariantViolationError(
                    "Cannot store asset event tags for null event id.")
            self._store_asset_event_tags(conn, events, event_ids)
            for index, (event, event_id) in enumerate(zip(events, event_ids)):
                if index not in superseded:
                    self._store_asset_event(conn, event, event_id)

    def wipe(self) -> None:
        # The stock wipe deletes the run shards' files: close them first, so no kept connection
        # writes on into a deleted file.
        with self._db_lock, self._engines_lock:
            for shard in [shard for shard in self._engines if shard != INDEX_SHARD_NAME]:
                self._engines.pop(shard).dispose()
        super().wipe()

    def watch(self, run_id: str, cursor, callback) -> None:
        # The UI follows a running run by watching its shard's file. A writer that keeps its
        # connection appends to the write-ahead log (``<run>.db-wal``) and folds it into
        # ``<run>.db`` only now and then: watch both files, or the UI would lag behind.
        from watchdog.observers import Observer

        if not self._obs:
            self._obs = Observer()
            self._obs.start()
        watchdog = _ShardAndLogWatchdog(self, run_id, callback, cursor)
        self._watchers[run_id][callback] = (
            watchdog, self._obs.schedule(watchdog, self._base_dir, recursive=True))

    def kept_shards(self) -> list[str]:
        """Shards with an open engine, least recently used first."""
        return list(self._engines)

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock, self._engines_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _superseded_materializations(events) -> set[int]:
    """Positions of materializations followed by a later materialization of the same asset.

    Storing an asset event updates the asset's row: a materialization sets its latest
    materialization, run and timestamp; other asset events set a subset of those. So a later
    materialization of the same asset overwrites everything an earlier one wrote."""
    superseded, later = set(), set()
    for index in range(len(events) - 1, -1, -1):
        dagster_event = events[index].dagster_event
        if not dagster_event.is_step_materialization:
            continue
        key = dagster_event.asset_key
        if key in later:
            superseded.add(index)
        later.add(key)
    return superseded


class _ShardAndLogWatchdog(SqliteEventLogStorageWatchdog):
    """Dagster's run-shard watcher, woken by the shard's write-ahead log as well."""

    @property
    def patterns(self) -> list[str]:
        return [self._log_path, f"{self._log_path}-wal"]

    def on_modified(self, event) -> None:
        self._process_log()


class PooledSqliteStorage(DagsterSqliteStorage):
    """``DagsterSqliteStorage`` (runs, event log, schedules under ``base_dir``) with the pooled
    event log above. Named in the ``dagster.yaml`` that ``bdt`` writes (``runs.instance_for``)."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = PooledSqliteEventLogStorage(
            os.path.join(base_dir, "history", "runs", ""))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
