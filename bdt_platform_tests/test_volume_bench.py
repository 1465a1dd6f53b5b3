"""``bdt bench --volume`` runs end to end at a tiny scale and produces every figure of issue 27's
goals 1-4, each beside its goal (no timing asserted: the figures are the bench's, at scale 100)."""

import json
import re
import subprocess
import sys
from pathlib import Path

from bdt_platform.bench.volume_bench import VOLUME_GOALS, _built_partitions

# One state x one month for the ingest and build pairs; for the new month, month 1 then month 2
# (one month of history): the smallest run with every step.
ARGS = ["--volume", "--volume-scale", "0.05", "--volume-states", "1", "--volume-months", "1",
        "--history-states", "1", "--history-months", "1"]


def test_volume_bench_produces_every_goal_figure(tmp_path):
    out = tmp_path / "volume.json"
    result = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "bench", *ARGS,
                             "--json", str(out)], capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    for name in ("read_csv_s", "ingest_s", "ingest_vs_read_csv", "casemgmt_ingest_s",
                 "dbt_build_s", "build_s", "build_vs_dbt", "unchanged_build_s",
                 "first_month_ingest_s", "first_month_build_s", "new_month_ingest_s",
                 "new_month_build_s", "new_month_vs_first_month"):
        assert figures[name] > 0, name
    assert figures["files"] == 5 and figures["partner_rows"] > 0
    # 6: the instance's size per partition materialization (ingests and builds of the grid).
    assert figures["materializations"] > 5 and figures["instance_mb"] > 0
    assert figures["instance_kb_per_materialization"] == (
        figures["instance_mb"] * 1024 / figures["materializations"])
    assert figures["ingest_vs_read_csv"] == figures["ingest_s"] / figures["read_csv_s"]
    assert figures["build_vs_dbt"] == figures["build_s"] / figures["dbt_build_s"]
    assert figures["unchanged_build_skipped"] is True, figures["notes"]
    assert figures["new_month_vs_first_month"] == (
        (figures["new_month_ingest_s"] + figures["new_month_build_s"])
        / (figures["first_month_ingest_s"] + figures["first_month_build_s"]))
    # Month 2 was built (what it rebuilt of month 1 is the figure's point, not asserted here),
    # and month 1's rows are the history.
    assert figures["new_month_built_partitions"] >= 1
    assert figures["new_month_built_partitions"] + figures["new_month_skipped_partitions"] == 2
    assert figures["history_partner_rows"] > 0 and figures["history_build_s"] == 0
    # Every goal printed beside its figure, with its verdict.
    table = result.stdout[result.stdout.index("bdt bench --volume (scale 0.05)"):]
    for number, goal in [(1, VOLUME_GOALS["ingest_vs_read_csv"]),
                         (2, VOLUME_GOALS["build_vs_dbt"]),
                         (4, VOLUME_GOALS["new_month_vs_first_month"])]:
        assert re.search(rf"^{number}\. .*\(goal < {goal:g}x\) (ok|MISSED)$", table, re.M), table
    # Goal 3's verdict is a timing (the skipped build's seconds against the first build's), so it
    # is printed, not asserted: a loaded machine moves it either side of 15%. That the skip is
    # real is asserted above (unchanged_build_skipped) and in test_build_skips_unchanged.
    assert re.search(r"^3\. .*\(goal < 2s or <= 15%\) (ok|MISSED)$", table, re.M), table
    assert "month 2 after 1 of history vs month 1 in an empty home" in table
    assert re.search(r"^6\. Dagster instance per partition materialization +[\d.]+ KB$", table,
                     re.M), table


def test_what_a_build_printed_says_what_it_built_and_skipped():
    assert _built_partitions("3 of 5 partition(s) up to date since run ab12cd34, skipped\n"
                             "building models and reports for 2 partition(s)\n") == (3, 2)
    assert _built_partitions("building models and reports for 51 partition(s); dbt output in x"
                             ) == (0, 51)
    assert _built_partitions("nothing new since run ab12cd34: 7 partition(s) up to date, "
                             "skipped (checked in 0.4s)") == (7, 0)


def test_volume_counts_below_one_are_refused():
    result = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "bench", "--volume",
                             "--history-months", "0"], capture_output=True, text=True,
                            timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2
    assert "--history-months must be 1 or more" in result.stdout
