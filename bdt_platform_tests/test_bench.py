"""The benchmark runs end to end at a tiny scale and produces every figure (no timing asserted)."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

FIGURES = ["generate_s", "read_csv_s", "read_csv_union_by_name_s", "ingest_s",
           "ingest_rows_per_s", "ingest_vs_read_csv", "ingest_vs_read_csv_union_by_name",
           "ingest_events", "build_events", "build_s", "dbt_build_s", "build_vs_dbt",
           "one_partition_process_s", "per_partition_extrapolated_s", "ingest_peak_rss_mb",
           "largest_partition_arrow_mb", "rss_vs_partition", "explain_s",
           "casemgmt_ingest_s", "casemgmt_rows", "casemgmt_rows_per_s", "unchanged_build_s",
           "unchanged_vs_build"]


# The smallest run that still has every step: 2 states x 2 months (4 partitions, every feed
# with rows at scale 0.05), each headline pair measured once (a build pair is a plain dbt build
# and a bdt build, ~30-40 s; how repeated pairs become medians and ratios, and the table row
# they print, is checked without running them, in
# test_repeated_pairs_give_medians_and_the_median_of_the_ratios), and a sensor inbox of 50
# files (the tick's cost, not its correctness, grows with the count). The memory probe's sizes
# are absolute generator scales (--probe-scales; 100, 400 and 1600 by default, whatever
# --scale): 1, 4 and 16 here, each partition still ~4x the one before (what is checked is
# that the sizes grow and the figures are computed from them, not the figures' values).
SCALE, REPEAT, PROBE = 0.05, 1, (1.0, 4.0, 16.0)


def test_bench_produces_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    # The checkout's own code (the console script would import whichever checkout is
    # installed), as the bench starts its children: ``python -m bdt_platform.cli``.
    result = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "bench", "--states", "2",
                             "--months", "2", "--scale",
                             str(SCALE), "--sensor-files", "50", "--repeat", str(REPEAT),
                             "--probe-scales", ",".join(f"{p:g}" for p in PROBE),
                             "--json", str(out)],
                            capture_output=True, text=True, timeout=1200,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for name in FIGURES:
        assert figures[name] > 0, name
    # --repeat N: each pair measured N times on the restored home; the figures are the
    # medians, the ratio the median of the pairs' ratios.
    runs = figures["repeats"]
    assert figures["repeat"] == REPEAT and {len(v) for v in runs.values()} == {REPEAT}, runs
    for baseline, measured, ratio in [("read_csv_s", "ingest_s", "ingest_vs_read_csv"),
                                      ("dbt_build_s", "build_s", "build_vs_dbt")]:
        assert figures[baseline] == statistics.median(runs[baseline])
        assert figures[measured] == statistics.median(runs[measured])
        assert figures[ratio] == statistics.median(
            m / b for b, m in zip(runs[baseline], runs[measured]))
    assert ("repeated pairs" in result.stdout) == (REPEAT > 1)
    # Memory is sampled in an ingest of its own; the timed ingests are not sampled.
    assert "bdt ingest, partner files, memory sampled: peak" in result.stdout
    # The memory probe: one partition at three sizes, each larger; the goal's figure is the
    # growth between the two largest, and every step's growth is kept.
    probe = figures["memory_probe"]
    assert [size["scale"] for size in probe] == list(PROBE)
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
    assert f"smaller sizes: scale {PROBE[0]:g} -> {PROBE[1]:g}" in result.stdout
    # A second bdt build with nothing new skipped every partition (and its time is a figure).
    assert figures["unchanged_build_skipped"] is True, figures["notes"]
    assert figures["unchanged_vs_build"] == figures["unchanged_build_s"] / figures["build_s"]
    assert figures["partitions"] == 4 and figures["files"] == 20
    # Few runs, never one per partition: the first two states (AK, AL) are adjacent, so each
    # step covers all four partitions with one rectangle.
    # Two ingests, one run each: the partner files alone (what read_csv is compared with),
    # then the case-management database, moved into the home afterwards.
    assert figures["ingest_runs"] == 2  # partner files, case management
    # every dbt model + reports, the readouts, the report export, the usage copy
    assert figures["build_runs"] == 4
    assert set(figures["sensor_tick"]) == {"folder", "sftp"}, figures["notes"]
    for line in ["ingest (partner files) vs DuckDB read_csv",
                 "ingest vs read_csv with union_by_name", "case-management extract",
                 "bdt build vs plain dbt build",
                 "Dagster runs started", "peak memory (PSS, all processes) above start-up floor",
                 "peak memory growth vs partition growth (one partition, two largest sizes)",
                 "sensor tick (folder)",
                 "sensor tick (sftp)", "bdt explain, one partition",
                 "bdt build with nothing new vs the first build"]:
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


def test_repeated_pairs_give_medians_and_the_median_of_the_ratios():
    """``--repeat N``: the figures of the repeated pairs are the medians of their measures and
    the median of the pairs' ratios (not the ratio of the medians), and the table says how many
    pairs there were and their spread."""
    from bdt_platform.bench.platform_bench import Figures, _paired, render

    runs = {"read_csv_s": [1.0, 2.0, 4.0], "ingest_s": [2.0, 3.0, 20.0],
            "dbt_build_s": [10.0, 30.0, 20.0], "build_s": [15.0, 30.0, 50.0]}
    # ingest/read_csv pairs: 2.0, 1.5, 5.0 -> 2.0, though the medians' ratio is 3.0 / 2.0
    assert _paired(runs, "read_csv_s", "ingest_s") == (2.0, 3.0, 2.0)
    # build/dbt pairs: 1.5, 1.0, 2.5 -> 1.5; the medians' ratio would be 30 / 20
    assert _paired(runs, "dbt_build_s", "build_s") == (20.0, 30.0, 1.5)
    figures = Figures(states=2, months=2, scale=0.2, partitions=4, files=20, rows=800,
                      repeat=3, repeats=runs)
    text = render(figures)
    assert ("repeated pairs" in text and "3 of each: medians, ratio of each pair" in text
            and "read_csv 1.00-4.00s, ingest 2.00-20.00s" in text
            and "plain dbt build 10.00-30.00s, bdt build 15.00-50.00s" in text), text
    assert "repeated pairs" not in render(Figures(2, 2, 0.2, 4, 20, 800))


def test_the_memory_probe_sizes_do_not_grow_with_scale():
    """The probe's partition sizes are absolute generator scales: ``--scale 100`` once made
    them 100 x (100, 400, 1600), a 10 GB partition generated in memory."""
    import argparse

    import pytest

    from bdt_platform.bench.platform_bench import MEMORY_PROBE_SCALES, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for scale in ("0.05", "1", "100"):
        assert parser.parse_args(["--scale", scale]).probe_scales == MEMORY_PROBE_SCALES
    assert MEMORY_PROBE_SCALES == (100.0, 400.0, 1600.0)
    assert parser.parse_args(["--scale", "100", "--probe-scales", "5,20,80"]).probe_scales == (
        5.0, 20.0, 80.0)
    for bad in ("80,20", "5", "0,5", "a,b"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--probe-scales", bad])
