"""``bdt build``: the dbt models and reports for a set of partitions, in as few runs as possible."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.core.runs import RunOutcome, execute, run_rectangles
from bdt_platform.storage.warehouse import Warehouse

BUILD_JOB = "build_warehouse"
EXPORT_JOB = "export_reports"
#: The unpartitioned reports read across every partition (the A/B readout): after every build
#: run, so they see all the partitions the builds wrote, not only the first run's.
READOUT_JOB = "build_readouts"
#: The report site's usage records into the warehouse (``usage.page_views``), after the exports.
USAGE_JOB = "publish_usage"


@dataclass
class BuildResult:
    partitions: list[tuple[str, dt.date]] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if all(run.success for run in self.runs) else 1


def partitions_with_raw_data(warehouse: Warehouse) -> set[tuple[str, dt.date]]:
    found: set[tuple[str, dt.date]] = set()
    for spec in ALL_SPECS.values():
        found |= warehouse.partitions(spec.table)
    return found


def select_partitions(available: set[tuple[str, dt.date]], states: list[str] | None,
                      months: list[dt.date] | None) -> list[tuple[str, dt.date]]:
    chosen = [(s, m) for s, m in available
              if (states is None or s in states) and (months is None or m in months)]
    return sorted(chosen, key=lambda p: (p[1], p[0]))


def job_assets(defs: dg.Definitions, job_name: str, partitioned: bool) -> list[dg.AssetKey]:
    """The assets of ``job_name`` that are partitioned (or not). The partitioned ones are what
    a second run over other partitions builds again: the others do not change with the
    partitions asked for."""
    layer = defs.resolve_job_def(job_name).asset_layer
    return sorted((key for key in layer.selected_asset_keys
                   if (layer.get(key).partitions_def is not None) == partitioned), key=str)


def build(defs: dg.Definitions, instance: dg.DagsterInstance, warehouse: Warehouse,
          states: list[str] | None = None, months: list[dt.date] | None = None,
          echo: Callable[[str], None] = print, tool_log: Path | None = None) -> BuildResult:
    """One ``build_warehouse`` run per rectangle of the partitions with raw data (a rectangle
    is a contiguous range of states x months; a full grid is a single run): every dbt model in
    one dbt command, then the reports. Runs after the first leave out the unpartitioned models,
    which the first built; none starts after a failed one. Then the readouts across all
    partitions (one run), the report export and the vendor files (as the builds), and the
    report site's usage rows."""
    chosen = select_partitions(partitions_with_raw_data(warehouse), states, months)
    result = BuildResult(chosen)
    if not chosen:
        echo("nothing to build: no raw data for the partitions asked (run `bdt ingest` first)")
        return result
    echo(f"building models and reports for {len(chosen)} partition(s)"
         + (f"; dbt output in {tool_log}" if tool_log else ""))
    result.runs = run_rectangles(defs, instance, BUILD_JOB, chosen, tool_log=tool_log,
                                 later_selection=job_assets(defs, BUILD_JOB, partitioned=True),
                                 stop_on_failure=True,
                                 progress=lambda message: echo(f"  {message}"))
    if all(run.success for run in result.runs):
        result.runs.append(execute(defs.resolve_job_def(READOUT_JOB), instance, {}, {}, None,
                                   [], [], tool_log=tool_log))
    if all(run.success for run in result.runs):
        result.runs += run_rectangles(defs, instance, EXPORT_JOB, chosen, tool_log=tool_log,
                                      progress=lambda message: echo(f"  {message}"))
    if all(run.success for run in result.runs):
        result.runs.append(execute(defs.resolve_job_def(USAGE_JOB), instance, {}, {}, None, [],
                                   [], tool_log=tool_log))
    for run in result.runs:
        status = "succeeded" if run.success else "FAILED"
        echo(f"  run {run.run_id[:8]} {status}: {len(run.materializations())} materializations")
        for failure in run.failures():
            echo(f"    {failure}")
    return result
