"""Who holds the warehouse's concurrency pool, and handing back the slots of runs that ended.

Every step that opens the warehouse claims the one slot of the ``warehouse`` pool
(``storage.warehouse.WAREHOUSE_POOL``; the limit is in bdt's ``dagster.yaml``) and gives it back
when it ends, so a second run's warehouse step waits for the first one's ("Step blocked by
limit for pool warehouse" in its log). A run that ended without handing its slot back (its
process was killed, then the run was marked failed or terminated in the UI) would hold it for
good: the daemon frees such slots ``free_slots_after_run_end_seconds`` after the run ended; a
``bdt`` command frees them before it starts a run (:func:`free_slots_of_ended_runs`), and says
who holds the slot when another run does (:func:`holders`).

A run that ``bdt`` ran in its own process (``runs.execute``) carries that process's identity
(``PROCESS_TAG``: host, pid and the pid's start time). When that process was killed (``kill
-9``, the out-of-memory killer, a machine that restarted) the run stays *started* for ever:
no run launcher watches an in-process run, so run monitoring cannot see it die. The next
``bdt`` command on the same host marks it failed (:func:`fail_runs_whose_process_died`) and so
hands back its slot, instead of waiting for it for ever.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES, IN_PROGRESS_RUN_STATUSES

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


#: The tag naming the process a ``bdt`` command ran a run in: ``<host>:<pid>:<start time>``.
PROCESS_TAG = "bdt/process"


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), so that a
    new process that got a dead one's pid is not taken for it; "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before it may hold spaces


def process_tag() -> dict[str, str]:
    """This process's identity, for the runs it runs (``PROCESS_TAG``)."""
    pid = os.getpid()
    return {PROCESS_TAG: f"{socket.gethostname()}:{pid}:{_start_time(pid)}"}


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    return not started or _start_time(pid) in ("", started)


def fail_runs_whose_process_died(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """Mark failed every run still in progress that a ``bdt`` command on this host ran in a
    process that no longer exists (killed mid-run); the runs (their slots are then handed back
    by :func:`free_slots_of_ended_runs`)."""
    host = socket.gethostname()
    records = instance.get_run_records(filters=dg.RunsFilter(
        statuses=list(IN_PROGRESS_RUN_STATUSES)))
    failed = []
    for record in records:
        run = record.dagster_run
        parts = run.tags.get(PROCESS_TAG, "").rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid, started = int(parts[1]), parts[2]
        if pid == os.getpid() or _alive(pid, started):
            continue
        instance.report_run_failed(run, message=(
            f"bdt: the process that ran this run (pid {pid} on {host}) is gone - killed or "
            "crashed mid-run; nothing it had not committed was kept. Marked failed by the next "
            "bdt command, which runs the work again."))
        failed.append(run)
    return failed


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
