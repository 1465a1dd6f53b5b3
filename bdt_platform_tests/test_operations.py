"""Running by itself (issue 26, retries and alerts): bdt's ``dagster.yaml`` loads in a real
Dagster instance (SQLite and PostgreSQL) with run retries, run monitoring, the one-slot
warehouse pool and tick retention; the jobs and assets declare their run retries, pool and
retry policy; and the pool really makes a second run's warehouse step wait until the slot is
given back, with ``bdt`` handing back the slots of runs that ended without doing so."""

from __future__ import annotations

import sys
import threading
import time
import traceback

import dagster as dg
import pytest
from dagster._core.scheduler.instigation import TickStatus

from bdt_platform.core import pools
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY
from bdt_platform.core.runs import sigterm_kept
from bdt_platform.core.runs import PG_URL_VARIABLE, RUN_RETRY_TAGS, instance_for
from bdt_platform.storage.warehouse import WAREHOUSE_POOL

from .conftest import make_settings
from .postgres_server import postgres_server  # noqa: F401  (the session's server, a fixture)


def _assert_operations_settings(instance: dg.DagsterInstance) -> None:
    from dagster._core.definitions.run_request import InstigatorType as Kind

    assert instance.run_retries_enabled and instance.run_retries_max_retries == 0
    assert instance.get_settings("run_retries")["retry_on_asset_or_op_failure"] is False
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 300
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 300
    pool_config = instance.get_concurrency_config().pool_config
    assert pool_config.default_pool_limit == 1
    assert pool_config.pool_granularity.value == "op"
    sensor_ticks = instance.get_tick_retention_settings(Kind.SENSOR)
    assert sensor_ticks[TickStatus.SKIPPED] == 7 and sensor_ticks[TickStatus.SUCCESS] == 90
    assert set(instance.get_tick_retention_settings(Kind.SCHEDULE).values()) == {90}


def test_the_sqlite_instance_has_run_retries_monitoring_pools_and_retention(tmp_path):
    instance = instance_for(make_settings(tmp_path / "home"))
    try:
        _assert_operations_settings(instance)
        # Rebuilt from its ref (as run workers and the daemon do): the same settings.
        rebuilt = dg.DagsterInstance.from_ref(instance.get_ref())
        try:
            _assert_operations_settings(rebuilt)
        finally:
            rebuilt.dispose()
    finally:
        instance.dispose()


def test_the_postgres_instance_has_them_too(tmp_path, postgres_server):  # noqa: F811
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(PG_URL_VARIABLE, raising=False)
        settings = make_settings(tmp_path / "home", BDT_DAGSTER_PG_URL=postgres_server.url)
        instance = instance_for(settings)
        try:
            assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
            _assert_operations_settings(instance)
            assert instance.event_log_storage.supports_global_concurrency_limits
        finally:
            instance.dispose()


def test_jobs_and_assets_declare_run_retries_the_warehouse_pool_and_retry_policies(platform):
    _, defs, _ = platform
    for name in ("ingest_feeds", "build_warehouse"):
        tags = defs.resolve_job_def(name).tags
        assert {k: tags[k] for k in RUN_RETRY_TAGS} == RUN_RETRY_TAGS
    assert "dagster/max_retries" not in defs.resolve_job_def("export_reports").tags
    graph = defs.resolve_asset_graph()
    opening = set()
    for assets_def in graph.assets_defs:
        if "warehouse" in assets_def.required_resource_keys or assets_def.op.name == "dbt_models":
            opening.add(assets_def.op.name)
            assert assets_def.op.pool == WAREHOUSE_POOL, assets_def.op.name
            policy = assets_def.op.retry_policy
            assert policy == TRANSIENT_RETRY_POLICY, assets_def.op.name
            assert policy.backoff == dg.Backoff.EXPONENTIAL and policy.jitter is not None
    # The feeds, dbt, the report, its export, the mail list and the usage copy.
    assert {"raw__eligibility", "raw__calls", "dbt_models", "reports__outcomes",
            "lake__outcomes_report", "outbox__mail_list", "usage__page_views"} <= opening


def test_a_second_runs_warehouse_step_waits_until_the_slot_is_given_back(platform):
    settings, defs, instance = platform
    job = defs.resolve_job_def("publish_usage")  # one warehouse step: usage/page_views
    # Another run's step holds the warehouse: a real run record, its slot claimed. (Run as
    # bdt runs it, SIGTERM kept: under xdist, whose workers ignore SIGINT, Dagster would leave
    # SIGTERM ignored after the run, and the waiting run's log-capture ``tail`` processes, started
    # off the main thread, would each take 30 s to stop.)
    with sigterm_kept():
        holder = job.execute_in_process(instance=instance).dagster_run
    claim = instance.event_log_storage.claim_concurrency_slot(WAREHOUSE_POOL, holder.run_id,
                                                              "dbt_models")
    assert claim.is_claimed
    [held] = pools.holders(instance)
    assert held.run_id == holder.run_id and held.step_key == "dbt_models"
    assert held.job_name == "publish_usage" and "run " + holder.run_id[:8] in held.line()

    results = {}
    waiting = threading.Thread(target=lambda: results.setdefault(
        "run", job.execute_in_process(instance=instance, raise_on_error=False)))
    waiting.start()
    try:
        time.sleep(3)
        assert waiting.is_alive()  # blocked on the pool, not done
        materialized = instance.fetch_materializations(
            dg.AssetKey(["usage", "page_views"]), limit=10).records
        assert [r.run_id for r in materialized] == [holder.run_id]
    finally:
        # The holding run ended (it did, above) without giving its slot back, as a killed run
        # marked failed would: bdt hands it back before its next run.
        freed = pools.free_slots_of_ended_runs(instance)
        waiting.join(60)
    assert freed == [holder.run_id]
    assert not waiting.is_alive(), "the waiting run did not end; it is at:\n" + "".join(
        traceback.format_stack(sys._current_frames()[waiting.ident]))
    assert results["run"].success
    blocked = [e for e in instance.all_logs(results["run"].run_id)
               if e.dagster_event and "blocked by limit for pool warehouse"
               in (e.dagster_event.message or "")]
    assert blocked
    assert pools.holders(instance) == []
    info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
    assert info.slot_count == 1 and not info.claimed_slots
