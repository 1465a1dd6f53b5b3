"""Retention: the Dagster event log of old runs shrinks to what is still read; provenance stays.

Every run writes dozens of events per step (step starts, outputs, log lines, engine events)
and every ingest or build adds its share, so the event log grows without bound (dagster
#33785). What is read after a run has ended is only a small part of it:

- kept, always: the asset events (materializations with their provenance metadata, which
  ``bdt explain`` and ``bdt explain --as-of`` read; observations; check evaluations, which
  explain reads for quarantined files; planned and failed materializations, which the UI's
  partition status reads), the run's status events (queued, started, succeeded, failed,
  cancelled) and its step failures with their errors (what an alert said);
- pruned, for runs that ended more than ``older_than_days`` ago: everything else (log lines,
  step starts and successes, outputs and inputs handled, engine and resource events), and the
  run's captured stdout/stderr (compute logs).

The runs themselves (their tags: what started them, which files, ``bdt/late_files``) stay.
:func:`prune` uses the instance's own storage (SQLite shards or PostgreSQL alike) and records
how far it got, so the next call looks only at runs that ended since. Schedule and sensor
ticks are the daemon's to purge (``retention`` in bdt's ``dagster.yaml``, ``core/runs.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

E = dg.DagsterEventType
#: The event types kept for every run, however old.
KEPT_EVENT_TYPES = frozenset(t.value for t in (
    E.ASSET_MATERIALIZATION, E.ASSET_MATERIALIZATION_PLANNED, E.ASSET_FAILED_TO_MATERIALIZE,
    E.ASSET_OBSERVATION, E.ASSET_CHECK_EVALUATION, E.ASSET_CHECK_EVALUATION_PLANNED,
    E.ASSET_HEALTH_CHANGED, E.ASSET_WIPED,
    E.RUN_ENQUEUED, E.RUN_DEQUEUED, E.RUN_STARTING, E.RUN_START, E.RUN_SUCCESS, E.RUN_FAILURE,
    E.RUN_CANCELING, E.RUN_CANCELED, E.RUN_SUSPENDED, E.RUN_RESUMED,
    E.STEP_FAILURE, E.RESOURCE_INIT_FAILURE,
))
#: Where :func:`prune` notes the end time up to which runs were pruned (the instance's own
#: key-value store).
CURSOR_KEY = "bdt/prune/pruned_until"


class RetentionError(RuntimeError):
    """The instance's event log is not one ``prune`` can work on."""


@dataclass
class PruneResult:
    runs: int = 0
    events_deleted: int = 0
    until: dt.datetime | None = None
    dry_run: bool = False

    def line(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"{self.runs} run(s) that ended before {self.until:%Y-%m-%d %H:%M}Z: {verb} "
                f"{self.events_deleted:,} event(s) and their captured logs; kept their "
                "materializations, checks, status and failures (bdt explain reads these)")


def _where_prunable(run_id: str):
    table = SqlEventLogStorageTable.c
    return db.and_(table.run_id == run_id,
                   db.or_(table.dagster_event_type.is_(None),
                          table.dagster_event_type.notin_(sorted(KEPT_EVENT_TYPES))))


def _count(storage: SqlEventLogStorage, run_id: str) -> int:
    with storage.run_connection(run_id) as conn:
        return conn.execute(db.select(db.func.count()).select_from(SqlEventLogStorageTable)
                            .where(_where_prunable(run_id))).scalar_one()


def _delete(storage: SqlEventLogStorage, run_id: str) -> int:
    with storage.run_connection(run_id) as conn:
        return conn.execute(SqlEventLogStorageTable.delete().where(_where_prunable(run_id))
                            ).rowcount or 0


def prune(instance: dg.DagsterInstance, older_than_days: float, *, dry_run: bool = False,
          now: dt.datetime | None = None,
          progress: Callable[[str], None] | None = None) -> PruneResult:
    """Prune the event logs of the runs that ended more than ``older_than_days`` ago."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise RetentionError(f"the instance's event log ({type(storage).__name__}) is not a "
                             "SQL event log; prune supports SQLite and PostgreSQL")
    if older_than_days < 0:
        raise ValueError("--older-than must be 0 days or more")
    now = now or dt.datetime.now(dt.timezone.utc)
    until = now - dt.timedelta(days=older_than_days)
    done = instance.run_storage.get_cursor_values({CURSOR_KEY}).get(CURSOR_KEY)
    since = dt.datetime.fromtimestamp(float(done), dt.timezone.utc) if done else None
    records = instance.get_run_records(filters=dg.RunsFilter(
        statuses=list(FINISHED_STATUSES), updated_before=until,
        **({"updated_after": since} if since else {})))
    result = PruneResult(until=until, dry_run=dry_run)
    for number, record in enumerate(records, start=1):
        if record.end_time is not None and record.end_time > until.timestamp():
            continue
        run_id = record.dagster_run.run_id
        count = _count(storage, run_id) if dry_run else _delete(storage, run_id)
        if not dry_run:
            try:
                instance.compute_log_manager.delete_logs(prefix=[run_id])
            except NotImplementedError:
                pass
        result.runs += 1
        result.events_deleted += count
        if progress and number % 100 == 0:
            progress(f"  {number}/{len(records)} run(s) looked at")
    if not dry_run:
        instance.run_storage.set_cursor_values({CURSOR_KEY: repr(until.timestamp())})
    return result
