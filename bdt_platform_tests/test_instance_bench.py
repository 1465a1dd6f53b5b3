"""`bdt bench --instance-only`: the run-start and per-partition-event cost of each instance
storage, PostgreSQL (a real server) beside Dagster's stock SQLite and bdt's pooled SQLite, as
ratios to the stock storage measured in the same run."""

import json
import math
import os

import dagster as dg

from bdt_platform.bench import instance_bench, platform_bench

from .postgres_server import postgres_server  # noqa: F401  (the session's server, a fixture)


def test_instance_figures_for_every_storage_with_ratios_to_stock_sqlite(
        tmp_path, capsys, monkeypatch, postgres_server):  # noqa: F811
    # Another test in this process may have set the variable (core.runs.instance_for does for
    # a PostgreSQL home): the bench must leave it as it found it, whatever that was.
    before = os.environ.get(instance_bench.PG_URL_VARIABLE)
    out = tmp_path / "figures.json"
    code = platform_bench.main(["--instance-only", "--pg-url", postgres_server.url,
                                "--instance-partitions", "5", "--instance-repeat", "1",
                                "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    figures = {f["storage"]: f for f in json.loads(out.read_text())["instance"]}
    assert list(figures) == ["sqlite_stock", "sqlite_pooled", "postgres"]
    for name, f in figures.items():
        # A 5-partition run only proves the figure is produced: its per-event cost is the
        # difference of two short runs, within the machine's noise (even below 0 on a busy
        # machine); the bench's own default (102 partitions, 5 pairs) is what docs quote.
        assert f["run_start_s"] > 0 and math.isfinite(f["per_event_ms"]), name
        stock = figures["sqlite_stock"]
        assert abs(f["run_start_vs_stock"] - f["run_start_s"] / stock["run_start_s"]) < 0.01
        assert abs(f["per_event_vs_stock"] - f["per_event_ms"] / stock["per_event_ms"]) < 0.01
        assert f"  {name:<14} run start" in printed
    assert figures["sqlite_stock"]["run_start_vs_stock"] == 1.0
    # No ingest/build figures in an instance-only bench, and none of Dagster's debug lines.
    assert "ingest" not in json.loads(out.read_text()) and "RUN_START" not in printed
    # The PostgreSQL figures are PostgreSQL's: the bench's runs are in the database it was
    # given (and the variable it set for them is back to what it was before).
    assert os.environ.get(instance_bench.PG_URL_VARIABLE) == before
    monkeypatch.setenv(instance_bench.PG_URL_VARIABLE,
                       instance_bench._driver_url(postgres_server.url))
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": {
            "env": instance_bench.PG_URL_VARIABLE}}}}) as instance:
        keyed = instance.get_materialized_partitions(dg.AssetKey("bench_partitions"))
        assert len(keyed) == 5 and "2024-01-01|AK" in keyed
