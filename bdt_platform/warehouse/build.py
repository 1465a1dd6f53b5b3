"""``bdt build``: the dbt models and reports for a set of partitions, in as few runs as possible."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.core.runs import RunOutcome, execute, run_rectangles
from bdt_platform.storage.warehouse import Warehouse
from bdt_platform.warehouse import staleness
from bdt_platform.warehouse.source_fingerprint import DEFAULT_DBT_PROJECT, source_fingerprint

BUILD_JOB = "build_warehouse"
EXPORT_JOB = "export_reports"
#: The unpartitioned reports read across every partition (the A/B readout): after every build
#: run, so they see all the partitions the builds wrote, not only the first run's.
READOUT_JOB = "build_readouts"
#: The report site's usage records into the warehouse (``usage.page_views``), after the exports.
USAGE_JOB = "publish_usage"


#: The jobs a build runs after its build runs, unpartitioned (their newest runs must have
#: succeeded for a build to count as finished).
AFTER_JOBS = (READOUT_JOB, USAGE_JOB)


@dataclass
class BuildResult:
    partitions: list[tuple[str, dt.date]] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)
    #: The partitions asked for that were up to date, and not built (``staleness``).
    skipped: list[tuple[str, dt.date]] = field(default_factory=list)
    plan: staleness.BuildPlan | None = None

    @property
    def exit_code(self) -> int:
        return 0 if all(run.success for run in self.runs) else 1


def partitions_with_raw_data(warehouse: Warehouse) -> set[tuple[str, dt.date]]:
    return warehouse.partitions_of([spec.table for spec in ALL_SPECS.values()])


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


def fingerprint(defs: dg.Definitions, extra: Mapping[str, str] | None = None) -> str:
    """The code a build runs (``staleness.code_fingerprint``): every asset's code version in
    the build's jobs, the dbt project's macros and settings, the outreach configuration and its
    do-not-contact list, and ``extra`` (settings that shape results, e.g. the mail piece cost)."""
    files = []
    dbt = defs.resources.get("dbt")
    if dbt is not None:
        project = Path(dbt.project_dir)
        files += [project / "dbt_project.yml", *project.glob("macros/**/*.sql")]
    outreach = defs.resources.get("outreach")
    if outreach is not None:
        files.append(Path(outreach.path))
        try:
            source = outreach.load().do_not_contact_source
        except dg.Failure:
            source = ""  # the build's runs will fail and say why
        if source:
            files.append(Path(source))
    extra_text = "".join(f"{name}={value}\n" for name, value in sorted((extra or {}).items()))
    return staleness.code_fingerprint(defs, [BUILD_JOB, EXPORT_JOB, *AFTER_JOBS], files) + (
        "" if not extra_text else "-" + hashlib.sha256(extra_text.encode()).hexdigest()[:8])


def defs_source_fingerprint(defs: dg.Definitions, settings_inputs: Mapping[str, str] | None
                            ) -> str:
    """``source_fingerprint`` of the dbt project and outreach configuration ``defs`` use."""
    outreach = defs.resources.get("outreach")
    dbt = defs.resources.get("dbt")
    return source_fingerprint(Path(dbt.project_dir) if dbt is not None else DEFAULT_DBT_PROJECT,
                              Path(outreach.path) if outreach is not None else None,
                              settings_inputs)


def nothing_new(settings, states: list[str] | None = None, months: list[dt.date] | None = None,
                echo: Callable[[str], None] = print) -> bool:
    """Whether a ``bdt build`` of those partitions with raw data would build nothing, decided
    from the instance, the warehouse and the sources alone (no definitions, dbt or
    dagster-dbt imported: ~1 s instead of ~5 s of start-up); True after saying so. False when
    anything may be stale: the build then decides with the definitions' code versions."""
    from bdt_platform.core.resources import build_warehouse
    from bdt_platform.core.runs import instance_for

    started = time.perf_counter()
    manifest = Path(settings.dbt_project_dir) / "target" / "manifest.json"
    if not manifest.exists():
        return False
    chosen = select_partitions(partitions_with_raw_data(build_warehouse(settings)), states,
                               months)
    if not chosen:
        return False
    instance = instance_for(settings)
    try:
        plan = staleness.compare(
            instance, chosen, staleness.fact_keys_from_manifest(manifest), staleness.SOURCE_TAG,
            source_fingerprint(settings.dbt_project_dir, settings.outreach_config,
                               settings.result_shaping()),
            BUILD_JOB, EXPORT_JOB, list(AFTER_JOBS),
            staleness.fact_keys_from_manifest(manifest, partitioned=False))
    finally:
        instance.dispose()
    if plan.to_build:
        return False
    _say_nothing_new(plan, started, echo)
    return True


def _say_nothing_new(plan: staleness.BuildPlan, started: float, echo) -> None:
    echo(f"nothing new since run {plan.since_run[:8]}: {len(plan.chosen)} partition(s) up to "
         f"date, skipped (checked in {time.perf_counter() - started:.2f}s; "
         "`bdt build --force` builds them again)")


def build(defs: dg.Definitions, instance: dg.DagsterInstance, warehouse: Warehouse,
          states: list[str] | None = None, months: list[dt.date] | None = None,
          echo: Callable[[str], None] = print, tool_log: Path | None = None,
          force: bool = False, settings_inputs: Mapping[str, str] | None = None
          ) -> BuildResult:
    """One ``build_warehouse`` run per rectangle of the partitions with raw data that are not
    up to date (a rectangle is a contiguous range of states x months; a full grid is a single
    run): every dbt model in one dbt command, then the reports. Runs after the first leave out
    the unpartitioned models, which the first built; none starts after a failed one. Then the
    readouts across all partitions (one run), the report export and the vendor files (as the
    builds), and the report site's usage rows.

    Up to date (``staleness.plan_build``): built by a finished build with today's code, and no
    raw input reaching it has a new data version since. Those partitions are skipped, and with
    none left nothing runs at all. ``force``: build every partition asked for, and compute every
    person of the incremental ``dim_person`` again (``staleness.RECOMPUTE_TAG``).
    ``settings_inputs``: settings that shape the results, part of the code fingerprint."""
    started = time.perf_counter()
    chosen = select_partitions(partitions_with_raw_data(warehouse), states, months)
    result = BuildResult(chosen)
    if not chosen:
        echo("nothing to build: no raw data for the partitions asked (run `bdt ingest` first)")
        return result
    code = fingerprint(defs, settings_inputs)
    sources = defs_source_fingerprint(defs, settings_inputs)
    if not force:
        plan = result.plan = staleness.plan_build(defs, instance, chosen, code, BUILD_JOB,
                                                  EXPORT_JOB, AFTER_JOBS)
        result.skipped = plan.up_to_date
        if not plan.to_build:
            _say_nothing_new(plan, started, echo)
            return result
        if result.skipped:
            echo(f"{len(result.skipped)} of {len(chosen)} partition(s) up to date since run "
                 f"{plan.since_run[:8]}, skipped")
        for line in plan.reasons():
            echo(f"  to build: {line}")
        chosen = plan.to_build
    tags = {staleness.CODE_TAG: code, staleness.SOURCE_TAG: sources,
            **({staleness.RECOMPUTE_TAG: "true"} if force else {})}
    echo(f"building models and reports for {len(chosen)} partition(s)"
         + (f"; dbt output in {tool_log}" if tool_log else ""))
    result.runs = run_rectangles(defs, instance, BUILD_JOB, chosen, tool_log=tool_log,
                                 later_selection=job_assets(defs, BUILD_JOB, partitioned=True),
                                 stop_on_failure=True, tags=tags,
                                 progress=lambda message: echo(f"  {message}"))
    if all(run.success for run in result.runs):
        result.runs.append(execute(defs.resolve_job_def(READOUT_JOB), instance, {}, tags,
                                   None, [], [], tool_log=tool_log))
    if all(run.success for run in result.runs):
        result.runs += run_rectangles(defs, instance, EXPORT_JOB, chosen, tool_log=tool_log,
                                      tags=tags, progress=lambda message: echo(f"  {message}"))
    if all(run.success for run in result.runs):
        result.runs.append(execute(defs.resolve_job_def(USAGE_JOB), instance, {}, tags, None,
                                   [], [], tool_log=tool_log))
    for run in result.runs:
        status = "succeeded" if run.success else "FAILED"
        echo(f"  run {run.run_id[:8]} {status}: {len(run.materializations())} materializations")
        for failure in run.failures():
            echo(f"    {failure}")
    return result
