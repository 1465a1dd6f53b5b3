"""The benchmark runs end to end at a tiny scale and produces every figure (no timing asserted)."""

import json
import subprocess
import sys
from pathlib import Path

FIGURES = ["generate_s", "read_csv_s", "read_csv_union_by_name_s", "ingest_s",
           "ingest_rows_per_s", "ingest_vs_read_csv", "ingest_vs_read_csv_union_by_name",
           "ingest_events", "build_events", "build_s", "dbt_build_s", "build_vs_dbt",
           "one_partition_process_s", "per_partition_extrapolated_s", "ingest_peak_rss_mb",
           "largest_partition_arrow_mb", "rss_vs_partition", "explain_s",
           "casemgmt_ingest_s", "casemgmt_rows", "casemgmt_rows_per_s"]


def test_bench_produces_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    bdt = Path(sys.executable).with_name("bdt")
    result = subprocess.run([str(bdt), "bench", "--states", "2", "--months", "2", "--scale",
                             "0.2", "--sensor-files", "200", "--repeat", "3", "--json", str(out)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for name in FIGURES:
        assert figures[name] > 0, name
    # --repeat 3: each pair measured three times on the restored home; the figures are the
    # medians, the ratio the median of the three pairs' ratios.
    runs = figures["repeats"]
    assert figures["repeat"] == 3 and {len(v) for v in runs.values()} == {3}, runs
    for baseline, measured, ratio in [("read_csv_s", "ingest_s", "ingest_vs_read_csv"),
                                      ("dbt_build_s", "build_s", "build_vs_dbt")]:
        assert figures[baseline] == sorted(runs[baseline])[1]
        assert figures[measured] == sorted(runs[measured])[1]
        assert figures[ratio] == sorted(m / b for b, m in zip(runs[baseline], runs[measured]))[1]
    assert "repeated pairs" in result.stdout
    # Memory is sampled in an ingest of its own; the timed ingests are not sampled.
    assert "bdt ingest, partner files, memory sampled: peak" in result.stdout
    # The memory probe: one partition at three sizes, each larger; the goal's figure is the
    # growth between the two largest, and every step's growth is kept.
    probe = figures["memory_probe"]
    assert [size["scale"] for size in probe] == [0.2 * 100, 0.2 * 400, 0.2 * 1600]
    for small, large in zip(probe, probe[1:]):
        assert large["largest_partition_mb"] > 2 * small["largest_partition_mb"] > 0
    steps = figures["memory_growth_steps"]
    assert [(step["from_scale"], step["to_scale"]) for step in steps] == [
        (probe[0]["scale"], probe[1]["scale"]), (probe[1]["scale"], probe[2]["scale"])]
    small, large = probe[-2], probe[-1]
    for peak, growth, key in [("peak_mb", "memory_growth_vs_partition", "ingest"),
                              ("read_csv_peak_mb", "read_csv_memory_growth_vs_partition",
                               "read_csv")]:
        assert all(size[peak] > 0 for size in probe)
        assert figures[growth] == steps[-1][key] == (
            (large[peak] - small[peak])
            / (large["largest_partition_mb"] - small["largest_partition_mb"]))
    assert "smaller sizes: scale 20 -> 80" in result.stdout
    assert figures["partitions"] == 4 and figures["files"] == 20
    # Few runs, never one per partition: the first two states (AK, AL) are adjacent, so each
    # step covers all four partitions with one rectangle.
    # Two ingests, one run each: the partner files alone (what read_csv is compared with),
    # then the case-management database, moved into the home afterwards.
    assert figures["ingest_runs"] == 2  # partner files, case management
    assert figures["build_runs"] == 2  # every dbt model + reports, report export
    assert set(figures["sensor_tick"]) == {"folder", "sftp"}, figures["notes"]
    for line in ["ingest (partner files) vs DuckDB read_csv",
                 "ingest vs read_csv with union_by_name", "case-management extract",
                 "bdt build vs plain dbt build",
                 "Dagster runs started", "peak memory (PSS, all processes) above start-up floor",
                 "peak memory growth vs partition growth (one partition, two largest sizes)",
                 "sensor tick (folder)",
                 "sensor tick (sftp)", "bdt explain, one partition"]:
        assert line in result.stdout


def test_a_failed_step_stops_the_bench_naming_the_step_and_its_log(tmp_path):
    """Every child the bench needs (generate's ingests, builds, read_csv) goes through
    ``_run_child``: a child that fails raises, naming the step, its exit code and the log that
    holds its output; one that succeeds gives its time."""
    import os

    import pytest

    from bdt_platform.bench.platform_bench import _run_child

    log = tmp_path / "bench.log"
    env = dict(os.environ)
    with pytest.raises(RuntimeError, match=r"^plain dbt build failed \(exit 3\); see .*bench\.log$"):
        _run_child([sys.executable, "-c", "print('dbt said no'); raise SystemExit(3)"], env, log,
                   "plain dbt build")
    assert "dbt said no" in log.read_text()
    seconds, peak_mb = _run_child([sys.executable, "-c", "pass"], env, log, "a step")
    assert seconds > 0 and peak_mb > 0
