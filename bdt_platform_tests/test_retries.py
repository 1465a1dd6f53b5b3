"""Transient failures of a step are retried in the same run: a warehouse file locked by another
process (a real second DuckDB process holding its write lock), for a load and for any other
step that opens the warehouse; a step that fails for good is not retried though its asset has
a retry policy; real transient errors (refused SFTP, DuckDB's lock, Google 5xx) are told apart
from final ones."""

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core import retries
from bdt_platform.inbox.ingest import run_config_for_drops
from bdt_platform.inbox.scan import scan
from bdt_platform.core.runs import execute
from bdt_platform.storage.warehouse import DuckDBWarehouse, WarehouseBusy
from bdt_platform.synthetic import generate

MONTH = dt.date(2024, 3, 1)
HOLD = ("import duckdb, sys, time\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "print('held', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n")


def _hold_write_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process that holds the warehouse's write lock for ``seconds``."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_locked_warehouse_is_reported_as_busy_with_its_path(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    DuckDBWarehouse(path=str(path)).query("SELECT 1")  # create it
    holder = _hold_write_lock(path, 30)
    try:
        with pytest.raises(WarehouseBusy, match="in use by another process") as caught:
            with DuckDBWarehouse(path=str(path)).batch():
                pass
        assert str(path) in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_load_waits_for_a_warehouse_locked_by_another_process(platform):
    settings, defs, instance = platform
    generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=["PA"], months=[MONTH],
             scale=0.2, seed=3, pii_key=settings.pii_key)
    warehouse = defs.resources["warehouse"]
    warehouse.query("SELECT 1")  # the file exists before the other process locks it
    drops = [d for d in scan(defs.resources["inbox"].list_files(), None, settle_seconds=0).ready
             if d.name.feed == "eligibility"]
    assert len(drops) == 2  # the state agency's and the community partner's
    key = parts.partition_key("PA", MONTH)
    run_config = run_config_for_drops({"eligibility": {key: drops}})(["PA"], [MONTH])
    holder = _hold_write_lock(settings.warehouse_path, 2)
    try:
        outcome = execute(defs.resolve_job_def("ingest_feeds"), instance, run_config,
                          parts.range_tags(["PA"], [MONTH]), [dg.AssetKey(["raw", "eligibility"])],
                          ["PA"], [MONTH])
    finally:
        holder.wait()
    assert outcome.success, outcome.failures()
    retries = [e for e in outcome.events
               if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 1
    cause = retries[0].event_specific_data.error.cause
    assert cause.cls_name == "WarehouseBusy" and str(settings.warehouse_path) in cause.message
    # Landed once: one materialization, the file's rows, and the file out of the inbox.
    assert [m.partition for m in outcome.materializations()] == [key]
    rows = warehouse.query("SELECT count(*) AS n FROM raw.eligibility")["n"][0]
    assert rows == outcome.materializations()[0].metadata["dagster/row_count"].value > 0
    assert not [f for f in defs.resources["inbox"].list_files() if "eligibility" in f.name]


def _retries(events) -> list:
    return [e for e in events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]


def test_every_warehouse_step_waits_for_a_lock_not_only_the_loads(platform):
    """usage/page_views (the report site's usage copied into the warehouse) meets the same
    real lock: retried once after the holder let go, then done."""
    settings, defs, instance = platform
    defs.resources["warehouse"].query("SELECT 1")
    holder = _hold_write_lock(settings.warehouse_path, 2)
    try:
        result = defs.resolve_job_def("publish_usage").execute_in_process(
            instance=instance, raise_on_error=False)
    finally:
        holder.wait()
    assert result.success
    [retry] = _retries(result.all_events)
    cause = retry.event_specific_data.error.cause
    assert cause.cls_name == "WarehouseBusy" and str(settings.warehouse_path) in cause.message
    assert len(result.get_asset_materialization_events()) == 1


def test_a_step_that_fails_for_good_is_not_retried_though_it_has_a_retry_policy(platform):
    _, defs, instance = platform
    job = defs.resolve_job_def("export_reports")
    [export] = [a for a in defs.resolve_asset_graph().assets_defs
                if a.op.name == "lake__outcomes_report"]
    assert export.op.retry_policy.max_retries == retries.RETRIES
    started = time.perf_counter()
    result = job.execute_in_process(instance=instance, raise_on_error=False,
                                    partition_key=parts.partition_key("PA", MONTH))
    assert not result.success
    assert _retries(result.all_events) == []
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
                 and e.step_key == "lake__outcomes_report"]
    reason = failure.step_failure_data.user_failure_data.description
    assert "reports.outcomes does not exist yet" in reason
    assert time.perf_counter() - started < retries.FIRST_WAIT_SECONDS


def test_transient_errors_are_told_apart_from_the_rest(server, tmp_path):
    """Real errors: a refused SFTP connection, DuckDB's lock, Google's 5xx and 429; a bad
    value or a missing table are final."""
    import duckdb
    from google.api_core import exceptions as google

    from bdt_platform.outbox.base import OutboxUnavailable
    from bdt_platform.outbox.sftp import SftpOutbox

    outbox = SftpOutbox(host="127.0.0.1", port=server.port, username=server.username,
                        key_file=str(server.client_key_file),
                        known_hosts_file=str(server.known_hosts_file), timeout_seconds=5)
    server.stop()
    with pytest.raises(OutboxUnavailable) as refused:
        outbox.publish("mailvendor", "list.csv", b"a,b\n")
    assert retries.transient_cause(refused.value) is refused.value

    path = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(path)).close()
    holder = _hold_write_lock(path, 30)
    try:
        with pytest.raises(duckdb.IOException) as locked:
            duckdb.connect(str(path))
    finally:
        holder.kill()
        holder.wait()
    assert retries.transient_cause(locked.value) is locked.value

    for error in (google.ServiceUnavailable("backend"), google.InternalServerError("x"),
                  google.TooManyRequests("quota")):
        assert retries.transient_cause(error) is error
    assert retries.transient_cause(google.NotFound("no such table")) is None
    assert retries.transient_cause(google.BadRequest("bad SQL")) is None
    # A failure caused by a transient error (how the mail list reports a server that was
    # down), and dbt's report of a model that met the lock, are transient; the rest is not.
    try:
        raise dg.Failure("1 mail list(s) could not be published") from refused.value
    except dg.Failure as failure:
        assert retries.transient_cause(failure) is refused.value
    dbt_text = dg.Failure("dbt build failed: IO Error: Could not set lock on file "
                          f"\"{path}\": Conflicting lock is held")
    assert retries.transient_cause(dbt_text) is dbt_text
    assert retries.transient_cause(ValueError("month 2024-13")) is None
    assert retries.transient_cause(dg.Failure("reports.outcomes breaks its contract")) is None


def test_dbt_that_meets_the_lock_is_retried_and_builds(platform):
    """dbt's DuckDB connection meets another process's lock: the whole dbt step is retried
    (core/retries.py reads DuckDB's "Could not set lock" in the errors dbt logged) and the
    retry builds the models and the report."""
    from bdt_platform.inbox.ingest import ingest
    from bdt_platform.warehouse.build import BUILD_JOB

    settings, defs, instance = platform
    generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=["PA"], months=[MONTH],
             scale=0.1, seed=3, pii_key=settings.pii_key)
    r = defs.resources
    landed = ingest(defs, instance, r["inbox"], r["lake"], r["warehouse"], r["casemgmt"],
                    settle_seconds=0, echo=lambda _: None)
    assert landed.exit_code == 0
    import threading

    # The other process lets go only once dbt met its lock and the step asked for a retry.
    holder = _hold_write_lock(settings.warehouse_path, 600)
    done = {}
    build = threading.Thread(target=lambda: done.setdefault("outcome", execute(
        defs.resolve_job_def(BUILD_JOB), instance, {}, parts.range_tags(["PA"], [MONTH]), None,
        ["PA"], [MONTH])))
    build.start()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and build.is_alive():
            runs = instance.get_runs(filters=dg.RunsFilter(job_name=BUILD_JOB))
            if any(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
                   for run in runs):
                break
            time.sleep(0.5)
    finally:
        holder.kill()
        holder.wait()
        build.join(300)
    outcome = done["outcome"]
    assert outcome.success, outcome.failures()
    retried = _retries(outcome.events)
    assert retried and {e.step_key for e in retried} == {"dbt_models"}
    cause = retried[0].event_specific_data.error.cause
    assert "could not set lock" in cause.message.lower()
    assert parts.partition_key("PA", MONTH) in {m.partition for m in outcome.materializations()
                                                if m.asset_key.path == ["reports", "outcomes"]}


def test_a_malformed_run_config_fails_at_once_though_the_load_has_a_retry_policy(platform):
    """An error anywhere in the step's code, here before it reads anything, is final."""
    _, defs, instance = platform
    key = parts.partition_key("PA", MONTH)
    started = time.perf_counter()
    outcome = execute(defs.resolve_job_def("ingest_feeds"), instance,
                      {"ops": {"raw__eligibility": {"config": {
                          "files": {key: ["paagency/x.csv"]}, "only_listed": True}}}},
                      parts.range_tags(["PA"], [MONTH]), [dg.AssetKey(["raw", "eligibility"])],
                      ["PA"], [MONTH])
    assert not outcome.success
    assert "run config raw/eligibility" in " ".join(outcome.failures())
    assert _retries(outcome.events) == []
    assert time.perf_counter() - started < retries.FIRST_WAIT_SECONDS
