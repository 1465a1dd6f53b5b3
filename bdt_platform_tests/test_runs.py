"""Runs over rectangles of partitions: what each run builds, and when runs stop."""

import datetime as dt

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import run_rectangles

JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
# Not a rectangle (NJ and NM are adjacent states): two runs.
PAIRS = [("NJ", JAN), ("NJ", FEB), ("NM", JAN)]


def _definitions(failing_partition: str | None = None) -> dg.Definitions:
    @dg.asset(partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def per_partition(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        if failing_partition in context.partition_keys:
            raise RuntimeError(f"no data for {failing_partition}")
        return dg.MaterializeResult()

    @dg.asset
    def whole() -> dg.MaterializeResult:
        return dg.MaterializeResult()

    job = dg.define_asset_job("both", selection=[per_partition, whole],
                              partitions_def=parts.state_month_partitions)
    return dg.Definitions(assets=[per_partition, whole], jobs=[job])


def _built(outcome) -> set[tuple[str, str | None]]:
    return {(m.asset_key.to_user_string(), m.partition) for m in outcome.materializations()}


def test_runs_after_the_first_build_only_the_later_selection():
    assert len(parts.rectangles(PAIRS)) == 2
    defs = _definitions()
    with dg.DagsterInstance.ephemeral() as instance:
        outcomes = run_rectangles(defs, instance, "both", PAIRS,
                                  later_selection=[dg.AssetKey("per_partition")])
    assert [run.success for run in outcomes] == [True, True]
    first, second = (_built(run) for run in outcomes)
    assert ("whole", None) in first and all(key == "per_partition" for key, _ in second)
    partitions = {p for key, p in first | second if key == "per_partition"}
    assert partitions == {parts.partition_key(state, month) for state, month in PAIRS}


@pytest.mark.parametrize("stop", [True, False])
def test_a_failed_run_stops_the_rest_only_when_asked(stop):
    states, months = parts.rectangles(PAIRS)[0]  # each pair is in one rectangle only
    defs = _definitions(failing_partition=parts.partition_key(states[0], months[0]))
    with dg.DagsterInstance.ephemeral() as instance:
        outcomes = run_rectangles(defs, instance, "both", PAIRS, stop_on_failure=stop)
    assert [run.success for run in outcomes] == ([False] if stop else [False, True])


SIGTERM_AFTER_RUNS = """
import signal, dagster as dg
from bdt_platform.core.runs import execute
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a script starts
signal.signal(signal.SIGTERM, signal.SIG_DFL)  # whatever the test process left it as

@dg.asset
def one() -> None:
    return None

job = dg.Definitions(assets=[one], jobs=[dg.define_asset_job("one", [one])]).resolve_job_def("one")
with dg.DagsterInstance.ephemeral() as instance:
    assert execute(job, instance, {}, {}, None, [], []).success
    print("after bdt's run:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    job.execute_in_process(instance=instance)
    print("after Dagster's own:", signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)
"""


def test_a_run_leaves_sigterm_as_it_was_when_sigint_is_ignored():
    """In a process that ignores SIGINT (a script's background job, an xdist worker), Dagster
    leaves SIGTERM ignored after an in-process run; bdt's ``execute`` puts it back, so ``kill``
    still stops the process and its later children do not inherit an ignored SIGTERM."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SIGTERM_AFTER_RUNS], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after bdt's run: True" in done.stdout
    assert "after Dagster's own: True" in done.stdout  # what bdt's execute guards against
