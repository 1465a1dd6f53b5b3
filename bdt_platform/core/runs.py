"""Running asset jobs in-process over many partitions, recorded in the Dagster instance.

A run covers one rectangle of ``state x month`` partitions (the single-run backfill route,
toolchain.md), so a whole year of 51 states costs one run per job, not one per partition.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.core.heartbeat import Heartbeat
from bdt_platform.core.settings import Settings


#: First line of the ``dagster.yaml`` that bdt writes and may rewrite; a file without it is the
#: user's own and is left as it is.
INSTANCE_CONFIG_MARK = "# Written by bdt (bdt_platform/runs.py); delete this line to keep your edits."
#: The ``dagster.yaml`` before the pooled storage (rewritten when found).
_EARLIER_INSTANCE_CONFIG = "telemetry:\n  enabled: false\n"
#: The variable the PostgreSQL ``dagster.yaml`` reads its URL from (Dagster's ``env:``).
PG_URL_VARIABLE = "BDT_DAGSTER_PG_URL"


#: Run retries (the daemon re-launches a failed run): how many times, per job, is the job's
#: ``dagster/max_retries`` tag (``RUN_RETRY_TAGS``); a job without the tag is not retried.
#: Only runs that failed without a step failing (the run worker crashed or was killed, run
#: monitoring gave up on it) are retried: a step that failed has used its own retries for
#: transient errors (``core/retries.py``) and failed for a reason a rerun does not fix.
RUN_RETRIES = {"enabled": True, "max_retries": 0, "retry_on_asset_or_op_failure": False}
#: The tags of the jobs that land and build data (``ingest_feeds``, ``build_warehouse``): up to
#: two re-launches of a run that died (``RUN_RETRIES``), re-running only the steps that had not
#: finished; a run that hangs is ended after six hours (run monitoring; a 51-state year builds
#: in minutes).
#: ``dagster/retry_on_asset_or_op_failure`` says the same as ``RUN_RETRIES`` on the run itself,
#: so an instance configured elsewhere (the Helm chart's) retries these jobs the same way.
RUN_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE",
                  "dagster/retry_on_asset_or_op_failure": "false",
                  "dagster/max_runtime": str(6 * 3600)}
#: Run monitoring (the daemon): a run that never starts, never finishes cancelling, or (with
#: a launcher that can check its workers, as Kubernetes') whose worker died is marked failed,
#: and its pool slots are freed; ``dagster/max_runtime`` on a job bounds a run that hangs.
RUN_MONITORING = {"enabled": True, "start_timeout_seconds": 300, "cancel_timeout_seconds": 300,
                  "max_resume_run_attempts": 0, "poll_interval_seconds": 60,
                  "free_slots_after_run_end_seconds": 300}
#: Concurrency pools: each pool holds one slot (``default_limit``), per step. The one pool,
#: ``warehouse`` (``storage.warehouse.WAREHOUSE_POOL``), is every step that opens the
#: warehouse, so only one of them, in any run, has it at a time (DuckDB lets one process hold
#: the file and none other meanwhile).
CONCURRENCY = {"pools": {"default_limit": 1, "granularity": "op"}}
#: How long the daemon keeps schedule and sensor ticks (days; -1 keeps them). Run event logs
#: are pruned by ``bdt prune`` (``ops/retention.py``), which keeps what ``bdt explain`` reads.
TICK_RETENTION = {"schedule": {"purge_after_days": 90},
                  "sensor": {"purge_after_days": {"skipped": 7, "failure": 30, "success": 90}}}


def _operations_config() -> str:
    """The ``dagster.yaml`` sections for running by itself (the daemon reads them):
    run retries, run monitoring, concurrency pools and tick retention."""
    import yaml

    return yaml.safe_dump({"run_retries": RUN_RETRIES, "run_monitoring": RUN_MONITORING,
                           "concurrency": CONCURRENCY, "retention": TICK_RETENTION},
                          sort_keys=False)


def instance_config(dagster_home: Path, postgres: bool = False) -> str:
    """bdt's ``dagster.yaml``: Dagster's SQLite storage with kept connections
    (``instance_storage.PooledSqliteStorage``) and telemetry off (offline machines); with
    ``postgres``, dagster-postgres's storage at the URL in ``$BDT_DAGSTER_PG_URL``, named, not
    written (Dagster reads the variable when it loads the instance: the password stays in the
    environment). Both with the operations sections (``_operations_config``)."""
    if postgres:
        return (f"{INSTANCE_CONFIG_MARK}\n"
                "storage:\n"
                "  postgres:\n"
                "    postgres_url:\n"
                f"      env: {PG_URL_VARIABLE}\n"
                "telemetry:\n"
                "  enabled: false\n"
                + _operations_config())
    return (f"{INSTANCE_CONFIG_MARK}\n"
            "storage:\n"
            "  custom:\n"
            "    module: bdt_platform.core.instance_storage\n"
            "    class: PooledSqliteStorage\n"
            "    config:\n"
            f"      base_dir: {json.dumps(str(dagster_home.absolute()))}\n"
            "telemetry:\n"
            "  enabled: false\n"
            + _operations_config())


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """The Dagster instance under ``$DAGSTER_HOME`` (default ``$BDT_HOME/dagster``): its files,
    or with ``BDT_DAGSTER_PG_URL`` its runs, event log and schedules in PostgreSQL."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    current = config.read_text() if config.exists() else None
    wanted = instance_config(home, postgres=settings.dagster_pg_url is not None)
    if current is None or current == _EARLIER_INSTANCE_CONFIG or (
            current != wanted and current.startswith(INSTANCE_CONFIG_MARK)):
        config.write_text(wanted)
    if settings.dagster_pg_url is not None:
        # The one place that exports it: the dagster.yaml names the variable, and Settings may
        # come from a mapping (tests). With the psycopg2 driver named (dagster-postgres's).
        os.environ[PG_URL_VARIABLE] = settings.dagster_pg_driver_url
    return dg.DagsterInstance.from_config(str(home))


def quiet_warnings() -> None:
    for category in (dg.BetaWarning, dg.PreviewWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    states: list[str]
    months: list[dt.date]
    events: list[dg.DagsterEvent] = field(default_factory=list)

    def materializations(self) -> list[dg.AssetMaterialization]:
        return [e.event_specific_data.materialization for e in self.events
                if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION]

    def check_evaluations(self):
        return [e.event_specific_data for e in self.events
                if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]

    def failures(self, step: str | None = None) -> list[str]:
        """Each failed step's message (``step``: that step's only), with why it failed (a
        ``dg.Failure``'s description, or the error's message and, when it wraps another - a
        step that used up its retries - that error's, which names what failed)."""
        failures = []
        for event in self.events:
            if event.event_type != dg.DagsterEventType.STEP_FAILURE or (
                    step is not None and event.step_key != step):
                continue
            data = event.step_failure_data
            reason = data.user_failure_data.description if data.user_failure_data else None
            if not reason and data.error:
                reason = " ".join(data.error.message.split()).rstrip(":")
                cause = data.error.cause
                if cause is not None:
                    reason += ": " + " ".join(cause.message.split())
            failures.append(f"{event.message or ''} {reason or ''}".strip())
        return failures


def run_rectangles(defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str,
                   pairs: Iterable[tuple[str, dt.date]],
                   selection: list[dg.AssetKey] | None = None,
                   later_selection: list[dg.AssetKey] | None = None,
                   stop_on_failure: bool = False,
                   run_config_for: Callable[[list[str], list[dt.date]], dict] | None = None,
                   tags: dict[str, str] | None = None,
                   progress: Callable[[str], None] | None = None,
                   log_level: str = "WARNING", tool_log: Path | None = None,
                   exact: bool = True) -> list[RunOutcome]:
    """Execute ``job_name`` once per rectangle covering ``pairs`` - exactly (no partition
    outside ``pairs``) or, with ``exact=False``, in one run over their bounding rectangle, for
    jobs whose assets skip the partitions they were not given. ``later_selection``: the assets
    of the runs after the first (default ``selection``), e.g. only the partitioned ones when the
    first run built the rest; ``stop_on_failure``: no run after a failed one. The console
    shows Dagster's own log lines from ``log_level`` up; the instance records everything
    regardless."""
    from bdt_platform.core import pools

    job = defs.resolve_job_def(job_name)
    outcomes = []
    rectangles = parts.rectangles(pairs) if exact else parts.bounding_rectangle(pairs)
    for number, (states, months) in enumerate(rectangles, start=1):
        if progress:
            progress(f"run {number}/{len(rectangles)} of {job_name}: {len(states)} state(s) x "
                     f"{len(months)} month(s) ({states[0]}..{states[-1]}, "
                     f"{months[0]:%Y-%m}..{months[-1]:%Y-%m})")
        # Runs of bdt commands whose process was killed mid-run: marked failed (they would
        # hold the warehouse's slot for ever); then the slots of every ended run handed back.
        for dead in pools.fail_runs_whose_process_died(instance):
            if progress:
                progress(f"run {dead.run_id[:8]} ({dead.job_name}) was left started by a "
                         f"process that is gone ({dead.tags[pools.PROCESS_TAG]}): marked "
                         "failed, its work is done again now")
        pools.free_slots_of_ended_runs(instance)
        if progress and (held := pools.holders(instance)):
            progress("waiting for the warehouse, held by " + "; ".join(h.line() for h in held)
                     + " (a run whose process is gone: mark it failed in the UI, Runs -> "
                     "Terminate, and its slot is freed)")
        run_config = dict(run_config_for(states, months)) if run_config_for else {}
        outcomes.append(execute(job, instance, run_config, {**parts.range_tags(states, months),
                                                            **(tags or {})},
                                selection if number == 1 or later_selection is None
                                else later_selection, states, months, log_level, tool_log))
        if stop_on_failure and not outcomes[-1].success:
            break
    return outcomes


@contextlib.contextmanager
def sigterm_kept():
    """SIGTERM's handling as it was before the block, again after it.

    Dagster's in-process execution maps SIGTERM onto whatever handles SIGINT when it puts
    SIGINT back after a run (``dagster._utils.interrupts.setup_interrupt_handlers``). In a
    process whose SIGINT is *ignored* - a background job of a non-interactive shell
    (``bdt build &`` in a script), a pytest-xdist worker - SIGTERM is then ignored too: ``kill``
    no longer stops the process, and every child started afterwards inherits the ignored
    SIGTERM (Dagster's own compute-log ``tail`` processes, which it stops with SIGTERM and then
    waits 30 s for). Only the main thread can set handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if before is not None and signal.getsignal(signal.SIGTERM) is not before:
            signal.signal(signal.SIGTERM, before)


def execute(job, instance: dg.DagsterInstance, run_config: dict, tags: dict[str, str],
            selection: list[dg.AssetKey] | None, states: list[str], months: list[dt.date],
            log_level: str = "WARNING", tool_log: Path | None = None) -> RunOutcome:
    """One in-process run. Tools that print to stdout (dbt) go to ``tool_log`` when given.
    The run carries this process's identity (``pools.PROCESS_TAG``): should the process be
    killed mid-run, the next bdt command marks the run failed. While it runs, a line every 20 s
    on stderr says what its steps last noted (``core.heartbeat``)."""
    from bdt_platform.core import pools

    run_config = dict(run_config)
    tags = {**tags, **pools.process_tag()}
    run_config.setdefault("loggers", {"console": {"config": {"log_level": log_level}}})
    redirect = contextlib.nullcontext()
    if tool_log is not None:
        tool_log.parent.mkdir(parents=True, exist_ok=True)
        redirect = contextlib.redirect_stdout(tool_log.open("a", encoding="utf-8"))
    scope = f" ({len(states)} state(s) x {len(months)} month(s))" if states and months else ""
    with redirect as stream, Heartbeat(f"{job.name}{scope}"), sigterm_kept():
        result = job.execute_in_process(run_config=run_config, instance=instance, tags=tags,
                                        asset_selection=selection, raise_on_error=False)
        if stream is not None and stream is not sys.stdout:
            stream.close()
    return RunOutcome(result.run_id, result.success, states, months, list(result.all_events))
