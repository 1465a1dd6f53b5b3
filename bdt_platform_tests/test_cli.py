"""The operator's interface from the outside: the `bdt` and `dagster` commands as a user runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args, home: Path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDT_", "DAGSTER_"))}
    env.update({"BDT_HOME": str(home), "BDT_PII_KEY": "cli-test-key", "PYTHONWARNINGS": "ignore",
                **extra})
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", ["generate", "ingest", "build", "demo", "explain", "prune", "bench",
                                     "ui"])
def test_every_command_has_help(tmp_path, command):
    result = _run([str(BIN / "bdt"), command, "--help"], tmp_path)
    assert result.returncode == 0
    assert "usage: bdt " + command in result.stdout


def test_dagster_loads_the_code_location_from_the_repo_root(tmp_path):
    (tmp_path / "dagster").mkdir()
    result = _run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                  tmp_path, DAGSTER_HOME=str(tmp_path / "dagster"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location bdt_platform" in result.stderr + result.stdout


def test_bad_usage_is_exit_2_with_one_line(tmp_path):
    result = _run([str(BIN / "bdt"), "generate", "--states", "PA,XX"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["bdt generate: --states: unknown state code(s): XX"]
    prod = _run([str(BIN / "bdt"), "ingest"], tmp_path, BDT_ENV="prod")
    assert prod.returncode == 2 and "BDT_GCP_PROJECT" in prod.stderr.strip().splitlines()[-1]


def test_explain_unknown_partition_is_exit_2(tmp_path):
    result = _run([str(BIN / "bdt"), "explain", "reports.outcomes", "--state", "PA", "--month",
                   "2024-03"], tmp_path)
    assert result.returncode == 2
    assert "never materialized" in result.stdout


def test_generate_then_ingest_prints_one_line_per_file_without_importing_dbt(tmp_path):
    """``bdt generate`` then ``bdt ingest``: one line per file landed, and nothing new the
    second time. The first ingest runs ``cli.main`` in a plain Python process, to show what it
    imported: ``bdt ingest`` builds the feed definitions alone, so neither dbt nor dagster-dbt
    (nor the BigQuery client, nor paramiko with a local inbox) is imported by a whole ingest
    that loads files and case-management rows; and it prints no Python warnings. (Once two
    tests, each generating and ingesting the same inbox; one ingest now serves both checks.)"""
    generated = _run([str(BIN / "bdt"), "generate", "--states", "PA", "--months", "2024-01",
                      "--scale", "0.2"], tmp_path)
    assert generated.returncode == 0, generated.stderr
    script = ("import sys\n"
              "from bdt_platform.cli import main\n"
              "code = main(['ingest', '--settle', '0'])\n"
              "print('IMPORTED', sorted({m for m in sys.modules if m.split('.')[0] in "
              "('dbt', 'dagster_dbt', 'paramiko') or m.startswith('google.cloud.bigquery')}))\n"
              "import gc\n"
              "print('FROZEN', gc.get_freeze_count() > 100_000, 'COLLECTING', gc.isenabled())\n"
              "sys.exit(code)\n")
    ingested = _run([sys.executable, "-c", script], tmp_path, PYTHONWARNINGS="default")
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    lines = [line for line in ingested.stdout.splitlines() if line.startswith("loaded ")]
    files = [line for line in lines if ".csv" in line]
    # eligibility (from the state agency and the community partner), outcomes, mailreturns and
    # nudges for PA 2024-01
    assert len(files) == 5
    assert all("[2024-01-01|PA]" in line and "rows into raw." in line for line in files)
    assert "5 file(s) loaded" in ingested.stdout and "rows into raw.clients" in ingested.stdout
    assert "IMPORTED []" in ingested.stdout
    # The start-up's objects (Dagster, definitions, instance) are frozen out of the garbage
    # collector's full passes, and collection is on again for the run.
    assert "FROZEN True COLLECTING True" in ingested.stdout
    assert "Warning" not in ingested.stderr  # Dagster's beta notices are not the user's concern
    again = _run([str(BIN / "bdt"), "ingest", "--settle", "0"], tmp_path)
    assert again.returncode == 0 and "nothing new in the inbox" in again.stdout


def test_ingest_reads_the_inbox_ahead_of_its_run(tmp_path):
    """With workers (here forced for 10 files), ``bdt ingest`` starts sending the inbox's files
    to them before it opens the instance and starts the run, says so, and the run takes them
    all."""
    generated = _run([str(BIN / "bdt"), "generate", "--states", "PA", "--months",
                      "2024-01..2024-02", "--scale", "0.2"], tmp_path)
    assert generated.returncode == 0, generated.stderr
    script = ("import sys\n"
              "from bdt_platform.feeds import workers\n"
              "workers.PARALLEL_MIN_FILES, workers.usable_cores = 1, lambda: 2\n"
              "from bdt_platform.cli import main\n"
              "sys.exit(main(['ingest', '--settle', '0']))\n")
    ingested = _run([sys.executable, "-c", script], tmp_path)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr
    assert "reading the inbox ahead of the run in 2 worker process(es)" in ingested.stdout
    assert "read ahead: 10 of 10 file(s) used by the run" in ingested.stdout
    assert "10 file(s) loaded, 0 quarantined" in ingested.stdout


def test_the_console_script_exits_without_collecting_what_the_command_left(tmp_path):
    """``bdt`` (the installed script) freezes the finished command's objects, so Python's last
    garbage collection does not walk them at exit (~2 s after a year's build); its exit code
    and output are the command's."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="bdt")
    assert script.value == "bdt_platform.cli:run"
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print('FROZEN', gc.get_freeze_count()))\n"
             "from bdt_platform.cli import run\n"
             "sys.argv = ['bdt', 'generate', '--states', 'PA', '--months', '2024-01', "
             "'--scale', '0.05']\n"
             "run()\n")
    finished = _run([sys.executable, "-c", probe], tmp_path)
    assert finished.returncode == 0, finished.stderr
    assert "PA" in finished.stdout
    frozen = int(finished.stdout.split("FROZEN ")[-1])
    assert frozen > 10_000  # every object alive at the end, the command's modules among them
