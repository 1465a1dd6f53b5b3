"""The Dagster instance's own cost: starting a run, and recording one partition's asset event.

Every ``bdt ingest`` / ``bdt build`` run pays a fixed start (the run record, its tags, the run's
event log opened, the plan's events) and, per partition it materializes, one asset event (the
provenance ``bdt explain`` reads). This measures both on each storage the platform can use, in
fresh homes, the same tiny job (one partitioned asset that does no data work):

- ``sqlite_stock``: Dagster's own ``DagsterSqliteStorage`` (a ``dagster.yaml`` with nothing
  but telemetry off): the baseline, measured in the same run;
- ``sqlite_pooled``: bdt's embedded default (``core/instance_storage.PooledSqliteStorage``,
  the ``dagster.yaml`` ``core/runs.instance_config`` writes);
- ``postgres``: dagster-postgres (production's storage) at the URL given, when one is given.
  Use a scratch database: the bench's runs stay in it.

Figures per storage: ``run_start_s`` (median wall time of a one-partition run),
``per_event_ms`` (median extra time per partition of a run over ``partitions`` partitions), and
both as ratios to ``sqlite_stock``.
"""

import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import PG_URL_VARIABLE, instance_config, quiet_warnings
from bdt_platform.core.settings import PG_DRIVER_SCHEME

STOCK_CONFIG = "telemetry:\n  enabled: false\n"
#: Dagster's console log of each bench run: warnings only (the instance records everything).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dg.asset(partitions_def=parts.state_month_partitions,
          backfill_policy=dg.BackfillPolicy.single_run(), output_required=False)
def bench_partitions(context: dg.AssetExecutionContext):
    """No data: one materialization per partition of the run, as a feed's load records."""
    for key in context.partition_keys:
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=key,
                                      metadata={"dagster/row_count": 0})


@dataclass
class StorageFigures:
    storage: str
    run_start_s: float
    per_event_ms: float
    run_start_vs_stock: float | None = None
    per_event_vs_stock: float | None = None


def _driver_url(url: str) -> str:
    return f"{PG_DRIVER_SCHEME}://{url.split('://', 1)[1]}"


def _instance(home: Path, storage: str) -> dg.DagsterInstance:
    home.mkdir(parents=True, exist_ok=True)
    config = (STOCK_CONFIG if storage == "sqlite_stock"
              else instance_config(home, postgres=storage == "postgres"))
    (home / "dagster.yaml").write_text(config)
    return dg.DagsterInstance.from_config(str(home))


def _range_tags(count: int) -> dict[str, str]:
    """The run tags of ``count`` partitions in one rectangle: the first ``count`` states of
    2024-01, or every state over ``count / 51`` months from 2024-01."""
    states = list(parts.STATES)
    if count <= len(states):
        return parts.range_tags(states[:count], [parts.month_start("2024-01-01")])
    if count % len(states):
        raise ValueError(f"{count} partitions: use at most {len(states)} or a multiple of it")
    months = [parts.add_months(parts.month_start("2024-01-01"), n)
              for n in range(count // len(states))]
    return parts.range_tags(states, months)


def _timed_run(instance: dg.DagsterInstance, count: int) -> float:
    started = time.perf_counter()
    result = dg.materialize([bench_partitions], instance=instance, tags=_range_tags(count),
                            run_config=QUIET)
    seconds = time.perf_counter() - started
    events = result.get_asset_materialization_events()
    if not result.success or len(events) != count:
        raise RuntimeError(f"bench run over {count} partition(s) failed or recorded "
                           f"{len(events)} events")
    return seconds


def measure(storage: str, root: Path, partitions: int = 102, repeat: int = 5) -> StorageFigures:
    """``repeat`` pairs of runs (one partition, then ``partitions``) in a fresh home, after one
    warm-up pair (imports, the first run's schema checks)."""
    instance = _instance(root / storage, storage)
    try:
        _timed_run(instance, 1)
        _timed_run(instance, partitions)
        starts, per_event = [], []
        for _ in range(repeat):
            one = _timed_run(instance, 1)
            many = _timed_run(instance, partitions)
            starts.append(one)
            per_event.append((many - one) / (partitions - 1) * 1000)
    finally:
        instance.dispose()
    return StorageFigures(storage, round(statistics.median(starts), 4),
                          round(statistics.median(per_event), 3))


def run_instance_bench(pg_url: str | None = None, partitions: int = 102, repeat: int = 5,
                       echo=print) -> list[StorageFigures]:
    """Every storage's figures, with ratios to ``sqlite_stock`` measured in the same call."""
    quiet_warnings()
    storages = ["sqlite_stock", "sqlite_pooled"] + (["postgres"] if pg_url else [])
    previous = os.environ.get(PG_URL_VARIABLE)
    if pg_url:
        os.environ[PG_URL_VARIABLE] = _driver_url(pg_url)
    figures = []
    try:
        with tempfile.TemporaryDirectory(prefix="bdt-bench-instance-") as scratch:
            for storage in storages:
                echo(f"instance: {storage}: {repeat} x (a run of 1 partition, a run of "
                     f"{partitions}) ...")
                figures.append(measure(storage, Path(scratch), partitions, repeat))
    finally:
        if pg_url:
            if previous is None:
                os.environ.pop(PG_URL_VARIABLE, None)
            else:
                os.environ[PG_URL_VARIABLE] = previous
    stock = figures[0]
    for figure in figures:
        figure.run_start_vs_stock = round(figure.run_start_s / stock.run_start_s, 2)
        figure.per_event_vs_stock = round(figure.per_event_ms / stock.per_event_ms, 2)
    if not pg_url:
        echo("instance: postgres: not measured (give --pg-url, a scratch database)")
    return figures


def render(figures: list[StorageFigures]) -> str:
    lines = ["Dagster instance (the same tiny job; ratios to Dagster's stock SQLite storage):"]
    for f in figures:
        lines.append(f"  {f.storage:<14} run start {f.run_start_s * 1000:7.1f} ms "
                     f"({f.run_start_vs_stock:.2f}x)   per partition event "
                     f"{f.per_event_ms:6.2f} ms ({f.per_event_vs_stock:.2f}x)")
    return "\n".join(lines)


def as_dicts(figures: list[StorageFigures]) -> list[dict]:
    return [asdict(f) for f in figures]
