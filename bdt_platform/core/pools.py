"""Who holds the warehouse's concurrency pool, and handing back the slots of runs that ended.

Every step that opens the warehouse claims the one slot of the ``warehouse`` pool
(``storage.warehouse.WAREHOUSE_POOL``; the limit is in bdt's ``dagster.yaml``) and gives it back
when it ends, so a second run's warehouse step waits for the first one's ("Step blocked by
limit for pool warehouse" in its log). A run that ended without handing its slot back (its
process was killed, then the run was marked failed or terminated in the UI) would hold it for
good: the daemon frees such slots ``free_slots_after_run_end_seconds`` after the run ended; a
``bdt`` command frees them before it starts a run (:func:`free_slots_of_ended_runs`), and says
who holds the slot when another run does (:func:`holders`).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES

from bdt_platform.storage.warehouse import WAREHOUSE_POOL


@dataclass(frozen=True)
class Holder:
    run_id: str
    step_key: str
    job_name: str | None
    status: str | None

    def line(self) -> str:
        return (f"run {self.run_id[:8]} ({self.job_name or 'unknown job'}, "
                f"{(self.status or 'unknown').lower()}) step {self.step_key}")


def free_slots_of_ended_runs(instance: dg.DagsterInstance) -> list[str]:
    """Give back every pool slot still held by a run that has ended; the runs' ids."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    run_ids = storage.get_concurrency_run_ids()
    if not run_ids:
        return []
    ended = instance.get_run_records(filters=dg.RunsFilter(run_ids=list(run_ids),
                                                           statuses=list(FINISHED_STATUSES)))
    freed = []
    for record in ended:
        storage.free_concurrency_slots_for_run(record.dagster_run.run_id)
        freed.append(record.dagster_run.run_id)
    return freed


def holders(instance: dg.DagsterInstance, pool: str = WAREHOUSE_POOL) -> list[Holder]:
    """The runs and steps holding ``pool``'s slots now."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    info = storage.get_concurrency_info(pool)
    found = []
    for claim in info.claimed_slots:
        run = instance.get_run_by_id(claim.run_id)
        found.append(Holder(claim.run_id, claim.step_key, run.job_name if run else None,
                            run.status.value if run else None))
    return found
