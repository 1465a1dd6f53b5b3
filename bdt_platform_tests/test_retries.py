"""Transient failures during a load are retried in the same run: a warehouse file locked by
another process (a real second DuckDB process holding its write lock)."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
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
