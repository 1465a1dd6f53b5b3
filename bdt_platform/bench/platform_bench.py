"""``bdt bench``: measure the platform against the raw engines, in one run, on one machine.

Generates data in a temporary $BDT_HOME, then measures (ratios are the headline; the machines
are noisy, so absolute times are printed beside them):

1. ingest rows/s (parse + validate + tokenize + load, through Dagster) of the partner files vs
   DuckDB ``read_csv`` of the same files into tables (the limit); the case-management extract
   is timed separately, in a second ingest, because the baseline reads only the files;
2. full ``bdt build`` wall time vs plain ``dbt build`` on the same raw tables;
3. Dagster runs started by each, and the extrapolated cost of one run per partition (one
   ``dagster asset materialize`` process for one partition, measured, times the partitions);
4. peak memory of ``bdt ingest`` above its start-up floor (imports, definitions and instance, no
   data) vs the Arrow size of the largest partition; memory is that of the whole process tree
   (the run's process and its worker processes: summed PSS, see ``_timed_child``), sampled in
   an ingest of the partner files of its own, not timed: sampling slows what it samples, so
   neither the timed ingests of the partner files nor the builds are sampled (the
   case-management extract, which has no goal, is timed and sampled at once). At scale 1 the
   largest partition is ~80 KB and the fixed costs (interpreters, worker pool, read-ahead) are
   all there is to see, so a second figure measures what grows with a partition: one partition
   ingested at three sizes (``_memory_probe``), the peak's growth per MB of partition growth
   between the two largest (past the fixed working set of a file read a slice at a time),
   at fixed generator scales whatever ``--scale`` (``MEMORY_PROBE_SCALES``, or
   ``--probe-scales``: a partition of scale 1600 is ~145 MB of Arrow, and ``--scale 100``
   once made it 10 GB),
   beside the same figure for DuckDB ``read_csv`` of the same files (the limit); the growth
   of every step is printed too;
5. a sensor tick over an inbox of many files (folder, and SFTP when available);
6. ``bdt explain`` on one partition with every partition materialized;
7. ``bdt build`` again with nothing new (the build's data and code versions unchanged): it
   skips every partition; its time against the first build's, beside the goal (under 2 s or at
   most 15% of the first build, whichever is larger).

With ``--repeat N`` the two headline pairs (``read_csv`` then ``bdt ingest``; plain ``dbt build``
then ``bdt build``) are each measured N times, every time on the same restored home, one pair
right after the other. A ratio is then the median of the N pairs' ratios (each pair's two
measures are seconds apart, so a machine that slows down or speeds up over minutes moves both),
and the absolute times are the medians; the JSON keeps every run (``repeats``).
"""

# Over 500 lines, on purpose: one benchmark run (its steps, their children, the figures and their
# table) read top to bottom in one file; its parts share the home, the log and the figures dict.

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bdt_platform.core.inbox_interface import PROCESSED
from bdt_platform.core.settings import load_settings

INGEST_START_UP = ("from bdt_platform.cli import _runtime, _settings\n"
                   "import bdt_platform.inbox.ingest\n"
                   "_runtime(_settings(), feeds_only=True)\n")
GOALS = {"ingest_vs_read_csv": 3.0, "build_vs_dbt": 2.0, "rss_vs_partition": 2.0,
         "memory_growth_vs_partition": 2.0, "sensor_tick_s": 2.0, "explain_s": 3.0,
         # A build with nothing new: under this many seconds, or at most this share of the
         # first build, whichever is larger (issue 27).
         "unchanged_build_s": 2.0, "unchanged_build_share": 0.15}
# The memory probe: one partition (every feed of one state x month) ingested at these generator
# scales - absolute, not multiples of ``--scale`` - so that its largest table is some MB (~9 MB
# of Arrow at 100), then four and sixteen times that, whatever the rest of the bench runs at.
MEMORY_PROBE_SCALES = (100.0, 400.0, 1600.0)


@dataclass
class Figures:
    states: int
    months: int
    scale: float
    partitions: int
    files: int
    rows: int
    generate_s: float = 0.0
    read_csv_s: float = 0.0
    read_csv_union_by_name_s: float = 0.0
    ingest_vs_read_csv_union_by_name: float = 0.0
    ingest_s: float = 0.0  # the partner files only: what read_csv is compared with
    ingest_rows_per_s: float = 0.0
    casemgmt_ingest_s: float = 0.0
    casemgmt_rows: int = 0
    casemgmt_rows_per_s: float = 0.0
    read_csv_rows_per_s: float = 0.0
    ingest_vs_read_csv: float = 0.0
    build_s: float = 0.0
    dbt_build_s: float = 0.0
    build_vs_dbt: float = 0.0
    ingest_runs: int = 0
    build_runs: int = 0
    ingest_events: int = 0
    build_events: int = 0
    one_partition_process_s: float = 0.0
    per_partition_extrapolated_s: float = 0.0
    import_floor_rss_mb: float = 0.0  # ingest's start-up, no data (the JSON name is kept)
    ingest_peak_rss_mb: float = 0.0
    largest_partition_arrow_mb: float = 0.0
    rss_vs_partition: float = 0.0
    # One partition ingested at three sizes (``MEMORY_PROBE_SCALES``): per size, the scale,
    # the Arrow MB of its largest table and the ingest's peak memory (summed PSS); how many MB
    # the peak grew per MB the partition grew between the two largest sizes (the goal's
    # figure), and per step between consecutive sizes (``memory_growth_steps``).
    memory_probe: list[dict] = field(default_factory=list)
    memory_growth_vs_partition: float = 0.0
    read_csv_memory_growth_vs_partition: float = 0.0  # the same, of DuckDB read_csv (baseline)
    memory_growth_steps: list[dict] = field(default_factory=list)
    sensor_tick: dict = field(default_factory=dict)
    explain_s: float = 0.0
    # ``bdt build`` again with nothing new since the first (timed, a process of its own), its
    # share of the first build's time, and whether it said it skipped every partition.
    unchanged_build_s: float = 0.0
    unchanged_vs_build: float = 0.0
    unchanged_build_skipped: bool = False
    repeat: int = 1
    # Every measure of the repeated pairs, in order: read_csv_s, ingest_s, dbt_build_s, build_s.
    repeats: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDT_", "DAGSTER_"))}
    env.update(BDT_HOME=str(home), BDT_PII_KEY="bench-key-not-a-secret",
               DAGSTER_HOME=str(home / "dagster"), PYTHONWARNINGS="ignore")
    return env


def _timed_child(args: list[str], env: dict[str, str], log: Path, memory: bool = False
                 ) -> tuple[float, float, int]:
    """Run a child process; (wall seconds, peak memory MB, exit code).

    With ``memory``, peak memory is that of the child's whole process tree (an ingest of many
    files validates them in worker processes): the largest sum of the processes' PSS (resident
    memory, pages shared between processes counted once in all), sampled every 50 ms from
    ``/proc``. Sampling is not free: reading a process's PSS walks its page tables while its
    memory map is locked, and a year's ingest took 1-2 s longer while sampled (four alternating
    pairs: 10.4 s median unsampled, 11.6 s sampled), so timed runs are not sampled. Without
    ``memory``, or where there is no ``/proc``, it is the largest single process's peak RSS."""
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = _TreeMemory(process.pid) if memory else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        if sampler is not None:
            sampler.stop()
    elapsed = time.perf_counter() - started
    peak = sampler.peak_mb if sampler is not None and sampler.peak_mb else usage.ru_maxrss / 1024
    return elapsed, peak, os.waitstatus_to_exitcode(status)


def _run_child(args: list[str], env: dict[str, str], log: Path, what: str,
               memory: bool = False) -> tuple[float, float]:
    """``_timed_child`` of a step the bench needs: (wall seconds, peak memory MB), or
    RuntimeError naming ``what`` and the log when the child fails."""
    seconds, peak_mb, code = _timed_child(args, env, log, memory)
    if code != 0:
        raise RuntimeError(f"{what} failed (exit {code}); see {log}")
    return seconds, peak_mb


class _TreeMemory(threading.Thread):
    """Samples the summed PSS of a process and its descendants; keeps the peak (MB)."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_mb = pid, every, 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak_mb = max(self.peak_mb, sum(map(_pss_mb, _tree(self.pid))))
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join()


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:  # children are listed per thread of their parent
            for children in Path(f"/proc/{current}/task").glob("*/children"):
                todo.extend(int(child) for child in children.read_text().split())
        except OSError:
            continue
    return found


def _pss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def _bdt(*args: str) -> list[str]:
    return [sys.executable, "-m", "bdt_platform.cli", *args]


def _read_csv_baseline(files: list[Path], scratch: Path, union_by_name: bool = False,
                       all_varchar: bool = False) -> tuple[float, int]:
    """DuckDB's own CSV reader loading the same files into one table per feed (the limit).

    By default DuckDB sniffs the first file and reads the others against it (it still matches
    columns by header name when the same columns come in another order). ``union_by_name``
    reads every file's header and unions differing column sets: much slower on many small
    files, printed as a second figure. ``all_varchar`` reads every column as text (no type
    sniffing): the volume bench's baseline, as issue 27 defines it."""
    import duckdb

    by_feed: dict[str, list[str]] = {}
    for path in files:
        feed = path.name.split("_")[-1].split(".")[0]
        by_feed.setdefault(feed, []).append(str(path))
    started = time.perf_counter()
    target = scratch / (f"read_csv_{'union_by_name' if union_by_name else 'plain'}"
                        f"{'_text' if all_varchar else ''}.duckdb")
    target.unlink(missing_ok=True)  # a repeated measure starts from nothing too
    con = duckdb.connect(str(target))
    rows = 0
    for feed, paths in by_feed.items():
        con.execute(f"CREATE TABLE {feed} AS SELECT * FROM read_csv(?, header = true, "
                    f"union_by_name = {str(union_by_name).lower()}, "
                    f"all_varchar = {str(all_varchar).lower()}, filename = true)", [paths])
        rows += con.execute(f"SELECT count(*) FROM {feed}").fetchone()[0]
    con.close()
    return time.perf_counter() - started, rows


def _largest_partition_mb(warehouse_path: Path) -> float:
    import duckdb

    con = duckdb.connect(str(warehouse_path), read_only=True)
    largest = 0
    for (table,) in con.execute("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'raw'").fetchall():
        state, month = con.execute(f"SELECT state, month FROM raw.{table} GROUP BY ALL "
                                   "ORDER BY count(*) DESC LIMIT 1").fetchone()
        with warnings.catch_warnings():  # the extra Arrow copy is fine for a one-off measure
            warnings.simplefilter("ignore")
            arrow = con.execute(f"SELECT * FROM raw.{table} WHERE state = ? AND month = ?",
                                [state, month]).to_arrow_table()
        largest = max(largest, arrow.nbytes)
    con.close()
    return largest / 2**20


READ_CSV_IN_A_CHILD = ("import json, sys\n"
                      "from pathlib import Path\n"
                      "from bdt_platform.bench.platform_bench import _read_csv_baseline\n"
                      "_read_csv_baseline([Path(p) for p in json.loads(sys.argv[1])], "
                      "Path(sys.argv[2]))\n")


def _memory_probe(root: Path, state: str, month, scales: tuple[float, ...], log: Path
                  ) -> list[dict]:
    """``bdt ingest`` of one partition (every feed of one state x month) at each generator
    scale of ``scales`` (absolute), each in a home of its own, sampled for memory: per
    size, its scale, the Arrow MB of its largest table and the ingest's peak memory. Between
    two sizes the fixed costs (interpreters, definitions, worker pool, read-ahead budget) are
    the same, so the peak's growth over the partition's growth is what the ingest holds per MB
    of partition: what "peak memory bounded by the largest partition" is about.

    The baseline, measured the same way on the same files: DuckDB's ``read_csv`` of them into
    tables (``_read_csv_baseline``) in a process of its own (``read_csv_peak_mb``)."""
    from bdt_platform.synthetic import generate

    probe = []
    for size in scales:
        home = root / f"memory-probe-{size:g}"
        env = _env(home)
        summary = generate(home / "inbox", root / f"memory-probe-{size:g}-casemgmt.sqlite",
                           states=[state], months=[month], scale=size, seed=42,
                           pii_key=env["BDT_PII_KEY"])
        scratch = root / f"memory-probe-{size:g}-read-csv"
        scratch.mkdir()
        _, read_csv_peak_mb = _run_child(
            [sys.executable, "-c", READ_CSV_IN_A_CHILD,
             json.dumps([str(path) for path in summary.files]), str(scratch)], env, log,
            "read_csv of the memory probe's files", memory=True)
        _, peak_mb = _run_child(_bdt("ingest", "--settle", "0"), env, log,
                                "bdt ingest of the memory probe's partition", memory=True)
        probe.append({"scale": size, "peak_mb": peak_mb,
                      "read_csv_peak_mb": read_csv_peak_mb,
                      "largest_partition_mb": _largest_partition_mb(home / "warehouse.duckdb")})
        shutil.rmtree(home)
        shutil.rmtree(scratch)
    return probe


def _scales(text: str) -> tuple[float, ...]:
    """``--probe-scales``: at least two increasing positive scales, comma-separated."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not numbers: {text!r}") from None
    if len(scales) < 2 or scales[0] <= 0 or list(scales) != sorted(set(scales)):
        raise argparse.ArgumentTypeError(f"need two or more increasing scales above 0: {text!r}")
    return scales


#: What ``bdt build`` prints when it skipped every partition (``warehouse.build``).
NOTHING_NEW = "nothing new since run"


def _log_count(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text) if log.exists() else 0


def _growth(small: dict, large: dict, peak: str) -> float:
    """MB the ``peak`` grew per MB the largest table grew, from the probe's size ``small`` to
    its size ``large``."""
    return ((large[peak] - small[peak])
            / max(large["largest_partition_mb"] - small["largest_partition_mb"], 1e-6))


def _growth_steps(probe: list[dict]) -> list[dict]:
    """Per step between consecutive sizes: the scales, and both growth figures."""
    return [{"from_scale": small["scale"], "to_scale": large["scale"],
             "ingest": _growth(small, large, "peak_mb"),
             "read_csv": _growth(small, large, "read_csv_peak_mb")}
            for small, large in zip(probe, probe[1:])]


def _runs_and_events(dagster_home: Path, job_prefix: str | tuple[str, ...]
                     ) -> tuple[int, int]:
    """Runs of the jobs named ``job_prefix...`` (or exactly one of a tuple of names) and the
    events they recorded (each event is a write to the instance's storage: the fixed cost of
    per-partition provenance)."""
    import dagster as dg

    def wanted(name: str) -> bool:
        return name in job_prefix if isinstance(job_prefix, tuple) else name.startswith(job_prefix)

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        runs = [run for run in instance.get_runs() if wanted(run.job_name)]
        return len(runs), sum(len(instance.all_logs(run.run_id)) for run in runs)
    finally:
        instance.dispose()


def _restore(snapshot: Path, home: Path) -> None:
    """Put ``home`` back as ``snapshot`` holds it (a repeated measure starts where the first did)."""
    shutil.rmtree(home)
    shutil.copytree(snapshot, home, symlinks=True)


def _paired(repeats: dict, baseline: str, measured: str) -> tuple[float, float, float]:
    """(median baseline seconds, median measured seconds, median of the pairs' ratios)."""
    pairs = list(zip(repeats[baseline], repeats[measured]))
    return (statistics.median(repeats[baseline]), statistics.median(repeats[measured]),
            statistics.median(measured_s / baseline_s for baseline_s, measured_s in pairs))


def run_bench(states: int, months: int, scale: float, sftp: bool = True,
              sensor_files: int = 10_000, echo=print, repeat: int = 1,
              probe_scales: tuple[float, ...] = MEMORY_PROBE_SCALES) -> Figures:
    from bdt_platform.core import partitions as parts  # imports Dagster: not for `bdt --help`
    from bdt_platform.synthetic import generate

    chosen_states = list(parts.STATES[:states])
    chosen_months = parts.month_range(f"2024-01..{parts.add_months(parts.parse_month('2024-01'), months - 1):%Y-%m}")
    root = Path(tempfile.mkdtemp(prefix="bdt-bench-"))
    home, log = root / "home", root / "bench.log"
    env = _env(home)
    # The case-management database is written outside the home and moved in after the files'
    # ingest, so that ingest loads only what read_csv reads and the extract is timed on its own.
    casemgmt_pending = root / "casemgmt-pending.sqlite"
    try:
        echo(f"bench home {home} ({states} states x {months} months, scale {scale}); log {log}")
        started = time.perf_counter()
        summary = generate(home / "inbox", casemgmt_pending, states=chosen_states,
                           months=chosen_months, scale=scale, seed=42,
                           pii_key=env["BDT_PII_KEY"])
        figures = Figures(states, months, scale, len(chosen_states) * len(chosen_months),
                          len(summary.files), sum(summary.rows.values()),
                          generate_s=time.perf_counter() - started)
        file_rows = sum(n for feed, n in summary.rows.items()
                        if feed in ("eligibility", "outcomes", "mailreturns", "nudges"))
        figures.casemgmt_rows = sum(n for table, n in summary.rows.items()
                                    if table in ("clients", "applications", "calls"))
        echo(f"  generated {figures.files} files, {figures.rows:,} rows in {figures.generate_s:.1f}s")
        figures.repeat = repeat = max(1, repeat)
        runs = figures.repeats = {"read_csv_s": [], "ingest_s": [], "dbt_build_s": [],
                                  "build_s": []}
        figures.read_csv_union_by_name_s, _ = _read_csv_baseline(summary.files, root,
                                                                  union_by_name=True)
        echo(f"  DuckDB read_csv, union_by_name: {figures.read_csv_union_by_name_s:.2f}s")
        # The floor: ``bdt ingest``'s own start-up (its imports, definitions and instance) with
        # nothing to load, so what the ingest adds above it is the data it holds. It also
        # creates the home's Dagster instance (its empty SQLite files), so that every measured
        # ingest starts as all but a home's first one does: with an instance to open.
        _, figures.import_floor_rss_mb = _run_child(
            [sys.executable, "-c", INGEST_START_UP], env, log, "bdt ingest's start-up alone",
            memory=True)
        generated = root / "generated"
        # Each measure starts from this: the files, the instance, no runs.
        shutil.copytree(home, generated, symlinks=True)
        # Peak memory: an ingest of its own, sampled and not timed (see ``_timed_child``).
        _, files_rss_mb = _run_child(_bdt("ingest", "--settle", "0"), env, log,
                                     "bdt ingest of the partner files", memory=True)
        echo(f"  bdt ingest, partner files, memory sampled: peak {files_rss_mb:.0f} MB")
        for attempt in range(repeat):
            _restore(generated, home)
            waiting = sum(1 for path in (home / "inbox").glob("*/*")
                          if path.is_file() and path.parent.name != PROCESSED)
            if waiting != len(summary.files):  # each measure loads the whole generated inbox
                raise RuntimeError(f"ingest {attempt + 1}: {waiting} inbox files, expected "
                                   f"{len(summary.files)}")
            if not any((home / "dagster" / "history").glob("*.db")):  # ... into an instance
                raise RuntimeError(f"ingest {attempt + 1}: the home has no Dagster instance")
            seconds, baseline_rows = _read_csv_baseline(summary.files, root)
            runs["read_csv_s"].append(seconds)
            echo(f"  DuckDB read_csv: {baseline_rows:,} rows in {seconds:.2f}s")
            seconds, _ = _run_child(_bdt("ingest", "--settle", "0"), env, log,
                                    "bdt ingest of the partner files")
            runs["ingest_s"].append(seconds)
            echo(f"  bdt ingest, partner files: {seconds:.1f}s")
        figures.read_csv_s, figures.ingest_s, figures.ingest_vs_read_csv = _paired(
            runs, "read_csv_s", "ingest_s")
        figures.read_csv_rows_per_s = baseline_rows / figures.read_csv_s
        figures.ingest_rows_per_s = file_rows / figures.ingest_s
        figures.ingest_vs_read_csv_union_by_name = (figures.ingest_s
                                                    / figures.read_csv_union_by_name_s)

        # The first ingest found no database and may have left an empty one (SQLAlchemy creates
        # the file on connect): replace it with the generated one. The inbox is empty by now.
        os.replace(casemgmt_pending, load_settings(env).casemgmt_sqlite_path)
        figures.casemgmt_ingest_s, casemgmt_rss_mb = _run_child(
            _bdt("ingest", "--settle", "0"), env, log,
            "bdt ingest of the case-management database", memory=True)
        figures.casemgmt_rows_per_s = figures.casemgmt_rows / figures.casemgmt_ingest_s
        echo(f"  bdt ingest, case management: {figures.casemgmt_ingest_s:.1f}s")
        figures.ingest_peak_rss_mb = max(files_rss_mb, casemgmt_rss_mb)
        # Counted after both ingests: every run of the ingest job, files and case management.
        figures.ingest_runs, figures.ingest_events = _runs_and_events(home / "dagster", "ingest")
        figures.largest_partition_arrow_mb = _largest_partition_mb(home / "warehouse.duckdb")
        above_floor = max(figures.ingest_peak_rss_mb - figures.import_floor_rss_mb, 0.0)
        figures.rss_vs_partition = above_floor / max(figures.largest_partition_arrow_mb, 1e-6)
        echo(f"  bdt ingest: {figures.ingest_runs} run(s), "
             f"peak memory {figures.ingest_peak_rss_mb:.0f} MB")
        figures.memory_probe = _memory_probe(root, chosen_states[0], chosen_months[0],
                                             probe_scales, log)
        figures.memory_growth_steps = _growth_steps(figures.memory_probe)
        figures.memory_growth_vs_partition = figures.memory_growth_steps[-1]["ingest"]
        figures.read_csv_memory_growth_vs_partition = figures.memory_growth_steps[-1]["read_csv"]
        sizes = figures.memory_probe

        def series(key: str, digits: int) -> str:
            return " -> ".join(f"{size[key]:.{digits}f}" for size in sizes)

        echo(f"  one partition, {len(sizes)} sizes: peak {series('peak_mb', 0)} MB as it grows "
             f"{series('largest_partition_mb', 2)} MB; DuckDB read_csv of the same files: "
             f"{series('read_csv_peak_mb', 0)} MB; growth per MB by step: " + ", ".join(
                 f"{step['ingest']:.2f}x (read_csv {step['read_csv']:.2f}x)"
                 for step in figures.memory_growth_steps))

        # Plain dbt on a copy of the same raw tables: the engine's own cost. Each plain build
        # has a new target folder (no saved parse state), as each ``bdt build`` of a restored
        # home has.
        ingested = root / "ingested"
        if repeat > 1:
            shutil.copytree(home, ingested, symlinks=True)
        for attempt in range(repeat):
            if attempt:
                _restore(ingested, home)
            runs["dbt_build_s"].append(plain_dbt_build(home, root, env, log, attempt))
            seconds, _ = _run_child(_bdt("build"), env, log, "bdt build")
            runs["build_s"].append(seconds)
            if repeat > 1:
                echo(f"  build pair {attempt + 1}/{repeat}: bdt build {seconds:.1f}s, plain dbt "
                     f"build {runs['dbt_build_s'][-1]:.1f}s")
        figures.dbt_build_s, figures.build_s, figures.build_vs_dbt = _paired(
            runs, "dbt_build_s", "build_s")
        # Every run a build starts: the build runs (one per rectangle), the readouts, the
        # export (one per rectangle) and the usage copy.
        from bdt_platform.warehouse.build import AFTER_JOBS, BUILD_JOB, EXPORT_JOB

        figures.build_runs, figures.build_events = _runs_and_events(
            home / "dagster", (BUILD_JOB, EXPORT_JOB, *AFTER_JOBS))
        echo(f"  bdt build: {figures.build_s:.1f}s, {figures.build_runs} run(s); "
             f"plain dbt build {figures.dbt_build_s:.1f}s")
        # Nothing new since that build: the same command again skips every partition.
        skipped_before = _log_count(log, NOTHING_NEW)
        figures.unchanged_build_s, _ = _run_child(_bdt("build"), env, log,
                                                  "bdt build with nothing new")
        figures.unchanged_build_skipped = _log_count(log, NOTHING_NEW) > skipped_before
        figures.unchanged_vs_build = figures.unchanged_build_s / figures.build_s
        if not figures.unchanged_build_skipped:
            figures.notes.append("the build with nothing new did not skip (see the log)")
        echo(f"  bdt build with nothing new: {figures.unchanged_build_s:.2f}s "
             f"({figures.unchanged_vs_build:.0%} of the first)")

        # The legacy way: one process per partition. Measure one, extrapolate.
        key = parts.partition_key(chosen_states[0], chosen_months[0])
        dagster = Path(sys.executable).with_name("dagster")
        figures.one_partition_process_s, _, code = _timed_child(
            [str(dagster), "asset", "materialize", "-m", "bdt_platform.definitions", "--select",
             "raw/eligibility", "--partition", key], env, log)
        if code != 0:
            figures.notes.append(f"single-partition dagster CLI run exited {code}")
        # ingest (one run per partition per feed group) + build (one run per partition).
        figures.per_partition_extrapolated_s = figures.one_partition_process_s * figures.partitions * 2
        echo(f"  one partition in its own process: {figures.one_partition_process_s:.1f}s -> "
             f"{figures.per_partition_extrapolated_s / 60:.1f} min for all partitions")

        figures.explain_s = _explain_figure(home, env, log, chosen_states[0], chosen_months[0])
        echo(f"  bdt explain on one partition: {figures.explain_s:.2f}s")

        figures.sensor_tick = _sensor_figures(root, sensor_files, sftp, figures.notes)
        for backend, seconds in figures.sensor_tick.items():
            echo(f"  sensor tick over {sensor_files:,} files ({backend}): {seconds:.2f}s")
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def plain_dbt_build(home: Path, root: Path, env: dict[str, str], log: Path, attempt: int = 0
                    ) -> float:
    """Seconds of plain ``dbt build`` of the project on a copy of ``home``'s warehouse (the
    engine's own cost, the build's baseline), in a new target folder holding the project's
    parse state fitted to the copy (``warehouse.parse_state``), as the first ``bdt build`` of a
    restored home gets: both parse only what changed since the project's ``dbt parse``."""
    from bdt_platform.warehouse import parse_state
    from bdt_platform.warehouse.project import DBT_PROJECT_DIR, dbt_executable

    dbt_copy = root / "dbt_baseline.duckdb"
    shutil.copy(home / "warehouse.duckdb", dbt_copy)
    dbt_env = {**env, "BDT_WAREHOUSE_PATH": str(dbt_copy), "BDT_DBT_TARGET": "duckdb"}
    target = root / f"dbt_target_{attempt}"
    parse_state.seed(DBT_PROJECT_DIR, target, dbt_env)
    seconds, _ = _run_child(
        [dbt_executable(), "build", "--project-dir", str(DBT_PROJECT_DIR),
         "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path", str(target)],
        dbt_env, log, "plain dbt build")
    for leftover in (dbt_copy, dbt_copy.with_name(dbt_copy.name + ".wal")):
        leftover.unlink(missing_ok=True)
    return seconds


def _explain_figure(home: Path, env: dict[str, str], log: Path, state: str, month) -> float:
    """Rebuild one partition (a second materialization), then time explain in-process."""
    _run_child(_bdt("build", "--force", "--states", state, "--months", f"{month:%Y-%m}"),
               env, log, "bdt build for one partition")
    script = (
        "import time, os\n"
        "from bdt_platform.core.runs import quiet_warnings; quiet_warnings()\n"
        "from bdt_platform.definitions import defs\n"
        "from bdt_platform.core.runs import instance_for\n"
        "from bdt_platform.core.settings import load_settings\n"
        "from bdt_platform.explain.engine import explain\n"
        "from bdt_platform.explain.render import to_markdown\n"
        "import datetime as dt\n"
        "instance = instance_for(load_settings())\n"
        "started = time.perf_counter()\n"
        f"e = explain(instance, defs.resolve_asset_graph(), defs.resources['lake'], "
        f"'reports.outcomes', '{state}', dt.date.fromisoformat('{month.isoformat()}'))\n"
        "to_markdown(e)\n"
        "print('EXPLAIN_SECONDS', time.perf_counter() - started)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, check=True).stdout
    return float(output.split("EXPLAIN_SECONDS", 1)[1].split()[0])


def _sensor_figures(root: Path, files: int, sftp: bool, notes: list[str]) -> dict:
    """Seconds of the slowest sensor tick (list + decide + cursor) over ``files`` inbox files."""
    try:
        from bdt_platform.bench.sensor_tick import make_drops, time_sftp_ticks, time_ticks
        from bdt_platform.inbox.folder import FolderInbox
    except ImportError as exc:
        notes.append(f"sensor tick benchmark not available: {exc}")
        return {}
    figures = {}
    old = time.time() - 3600
    make_drops(root / "sensor" / "inbox", files, old)
    ticks = time_ticks(FolderInbox(root=str(root / "sensor" / "inbox")))
    figures["folder"] = max(row["total_s"] for row in ticks.values())
    if sftp:
        try:
            ticks = time_sftp_ticks(root / "sftp", files, old)
            figures["sftp"] = max(row["total_s"] for row in ticks.values())
        except Exception as exc:  # report, don't hide the other figures
            notes.append(f"SFTP sensor tick not measured: {exc}")
    return figures


def render(f: Figures) -> str:
    def ratio(value: float, goal: float) -> str:
        return f"{value:.2f}x (goal < {goal:g}x) {'ok' if value < goal else 'MISSED'}"

    rows = [
        ("ingest (partner files) vs DuckDB read_csv",
         ratio(f.ingest_vs_read_csv, GOALS["ingest_vs_read_csv"]),
         f"{f.ingest_s:.1f}s ({f.ingest_rows_per_s:,.0f} rows/s) vs {f.read_csv_s:.2f}s "
         f"({f.read_csv_rows_per_s:,.0f} rows/s)"),
        ("ingest vs read_csv with union_by_name", f"{f.ingest_vs_read_csv_union_by_name:.2f}x",
         f"{f.read_csv_union_by_name_s:.2f}s (every file's header read: DuckDB's per-file cost)"),
        ("case-management extract", f"{f.casemgmt_ingest_s:.1f}s",
         f"{f.casemgmt_rows:,} rows ({f.casemgmt_rows_per_s:,.0f} rows/s), a second bdt ingest"),
        ("bdt build vs plain dbt build", ratio(f.build_vs_dbt, GOALS["build_vs_dbt"]),
         f"{f.build_s:.1f}s vs {f.dbt_build_s:.1f}s"),
        ("Dagster runs started", f"ingest {f.ingest_runs} ({f.ingest_events:,} events), "
                                 f"build {f.build_runs} ({f.build_events:,} events)",
         f"one run per partition: ~{f.per_partition_extrapolated_s / 60:.1f} min "
         f"({f.one_partition_process_s:.1f}s per process x {f.partitions} partitions x 2)"),
        ("peak memory (PSS, all processes) above start-up floor vs largest partition",
         ratio(f.rss_vs_partition, GOALS["rss_vs_partition"]),
         f"{f.ingest_peak_rss_mb - f.import_floor_rss_mb:.0f} MB (peak {f.ingest_peak_rss_mb:.0f} MB,"
         f" floor {f.import_floor_rss_mb:.0f} MB) vs {f.largest_partition_arrow_mb:.2f} MB Arrow"),
    ]
    if len(f.memory_probe) >= 2:
        small, large = f.memory_probe[-2], f.memory_probe[-1]
        earlier = "; ".join(
            f"scale {step['from_scale']:g} -> {step['to_scale']:g}: {step['ingest']:.2f}x "
            f"(read_csv {step['read_csv']:.2f}x)" for step in f.memory_growth_steps[:-1])
        rows.append((
            "peak memory growth vs partition growth (one partition, two largest sizes)",
            ratio(f.memory_growth_vs_partition, GOALS["memory_growth_vs_partition"]),
            f"peak {small['peak_mb']:.0f} -> {large['peak_mb']:.0f} MB as the largest table "
            f"grows {small['largest_partition_mb']:.2f} -> {large['largest_partition_mb']:.2f} MB "
            f"Arrow (scale {small['scale']:g} -> {large['scale']:g}, 1 state x 1 month); DuckDB "
            f"read_csv of the same files {f.read_csv_memory_growth_vs_partition:.2f}x "
            f"({small['read_csv_peak_mb']:.0f} -> {large['read_csv_peak_mb']:.0f} MB)"
            + (f"; smaller sizes: {earlier}" if earlier else "")))
    for backend, seconds in sorted(f.sensor_tick.items()):
        if isinstance(seconds, (int, float)):
            rows.append((f"sensor tick ({backend})",
                         f"{seconds:.2f}s (goal < {GOALS['sensor_tick_s']:g}s) "
                         f"{'ok' if seconds < GOALS['sensor_tick_s'] else 'MISSED'}", ""))
    limit = max(GOALS["unchanged_build_s"], GOALS["unchanged_build_share"] * f.build_s)
    rows.append((
        "bdt build with nothing new vs the first build",
        f"{f.unchanged_vs_build:.0%} (goal < {GOALS['unchanged_build_s']:g}s or "
        f"<= {GOALS['unchanged_build_share']:.0%}) "
        f"{'ok' if f.unchanged_build_skipped and f.unchanged_build_s <= limit else 'MISSED'}",
        f"{f.unchanged_build_s:.2f}s vs {f.build_s:.1f}s; "
        + ("every partition skipped" if f.unchanged_build_skipped else "DID NOT SKIP")))
    rows.append(("bdt explain, one partition",
                 f"{f.explain_s:.2f}s (goal < {GOALS['explain_s']:g}s) "
                 f"{'ok' if f.explain_s < GOALS['explain_s'] else 'MISSED'}",
                 f"{f.partitions} partitions materialized"))
    if f.repeat > 1:
        rows.append(repeated_pairs_row(f.repeat, f.repeats))
    return table(f"bdt bench: {f.states} states x {f.months} months (scale {f.scale}): "
                 f"{f.partitions} partitions, {f.files} files, {f.rows:,} rows", "measure",
                 rows, f.notes)


def repeated_pairs_row(repeat: int, repeats: dict) -> tuple[str, str, str]:
    """The table row of ``--repeat N``: each pair's spread of seconds."""
    def spread(name: str) -> str:
        return f"{min(repeats[name]):.2f}-{max(repeats[name]):.2f}s"

    return ("repeated pairs", f"{repeat} of each: medians, ratio of each pair",
            f"read_csv {spread('read_csv_s')}, ingest {spread('ingest_s')}, "
            f"plain dbt build {spread('dbt_build_s')}, bdt build {spread('build_s')}")


def table(title: str, first_column: str, rows: list[tuple[str, str, str]],
          notes: list[str]) -> str:
    """A bench's figures as text: per row its name and result, its detail indented below."""
    width = max(len(row[0]) for row in rows)
    lines = [title, f"{first_column:<{width}}  result / absolute"]
    for name, result, detail in rows:
        lines.append(f"{name:<{width}}  {result}")
        if detail:
            lines.append(f"{'':<{width}}    {detail}")
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bdt bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--states", type=int, default=51, help="how many states (default 51)")
    parser.add_argument("--months", type=int, default=12, help="how many months from 2024-01")
    parser.add_argument("--scale", type=float, default=1.0, help="generator scale")
    parser.add_argument("--probe-scales", type=_scales, default=MEMORY_PROBE_SCALES,
                        metavar="A,B,C",
                        help="generator scales of the memory probe's one partition, absolute "
                             "(not multiples of --scale; default 100,400,1600: ~9, 37 and "
                             "146 MB of Arrow)")
    parser.add_argument("--sensor-files", type=int, default=10_000,
                        help="inbox size for the sensor tick figure (default 10,000)")
    parser.add_argument("--no-sftp", action="store_true", help="skip the SFTP sensor figure")
    parser.add_argument("--json", help="also write the figures as JSON to this path")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure the ingest and build pairs N times each on the same "
                             "restored home; report medians and the median pair ratio "
                             "(default 1)")
    parser.add_argument("--site", action="store_true",
                        help="also measure the report site (bdt_platform/bench/site_bench.py) "
                             "on a home of 51 states x 24 months at --site-scale: the "
                             "scorecard's server time against the same metric query on the "
                             "warehouse, and 20 signed-in users for 30 s")
    parser.add_argument("--site-scale", type=float, default=0.05, metavar="F",
                        help="generator scale of the report site's home (default 0.05)")
    parser.add_argument("--site-only", action="store_true",
                        help="only the report site's figures (implies --site)")
    parser.add_argument("--instance", action="store_true",
                        help="also measure the Dagster instance (bdt_platform/bench/"
                             "instance_bench.py): run start and per-partition event cost of "
                             "Dagster's stock SQLite storage, bdt's pooled SQLite, and "
                             "PostgreSQL with --pg-url")
    parser.add_argument("--instance-only", action="store_true",
                        help="only the Dagster instance's figures (implies --instance)")
    parser.add_argument("--pg-url", metavar="URL",
                        help="a scratch PostgreSQL database for the instance figures "
                             "(postgresql://user:password@host:port/db; the bench's runs stay "
                             "in it); without it PostgreSQL is not measured")
    parser.add_argument("--instance-partitions", type=int, default=102, metavar="N",
                        help="partitions of the instance bench's larger run (default 102)")
    parser.add_argument("--instance-repeat", type=int, default=5, metavar="N",
                        help="instance bench run pairs per storage (default 5)")
    parser.add_argument("--volume", action="store_true",
                        help="only the volume figures (bdt_platform/bench/volume_bench.py, "
                             "issue 27's goals at scale 100): ingest vs read_csv, build vs "
                             "plain dbt build, a build with nothing new, and a new month after "
                             "--history-months of history vs month 1 in an empty home")
    parser.add_argument("--volume-scale", type=float, default=100.0, metavar="F",
                        help="generator scale of the volume figures (default 100: ~90k "
                             "partner rows per state-month)")
    parser.add_argument("--volume-states", type=int, default=4, metavar="N",
                        help="states of the volume ingest and build pairs (default 4)")
    parser.add_argument("--volume-months", type=int, default=2, metavar="N",
                        help="months of the volume ingest and build pairs (default 2)")
    parser.add_argument("--history-states", type=int, default=1, metavar="N",
                        help="states of the new-month figure's home (default 1)")
    parser.add_argument("--history-months", type=int, default=24, metavar="N",
                        help="months of history before the new month (default 24)")


def _site_figures(scale: float) -> dict:
    import tempfile

    from bdt_platform.bench.site_bench import build_home, run_site_bench

    with tempfile.TemporaryDirectory(prefix="bdt-bench-site-") as scratch:
        home = Path(scratch) / "home"
        print(f"report site: building 51 states x 24 months at scale {scale} ...", flush=True)
        build_home(home, 51, 24, scale)
        return run_site_bench(home, requests=50, users=20, seconds=30.0)


def run(args: argparse.Namespace) -> int:
    result: dict = {}
    instance_only = getattr(args, "instance_only", False)
    if getattr(args, "volume", False):
        from bdt_platform.bench import volume_bench

        for name in ("volume_states", "volume_months", "history_states", "history_months",
                     "repeat"):
            if getattr(args, name) < 1:
                print(f"bdt bench: --{name.replace('_', '-')} must be 1 or more", flush=True)
                return 2
        volume = volume_bench.run_volume_bench(
            args.volume_scale, args.volume_states, args.volume_months, args.history_states,
            args.history_months, repeat=args.repeat,
            echo=lambda line: print(line, flush=True))
        print(volume_bench.render(volume), flush=True)
        result = asdict(volume)
    elif not args.site_only and not instance_only:
        figures = run_bench(args.states, args.months, args.scale, sftp=not args.no_sftp,
                            sensor_files=args.sensor_files, repeat=args.repeat,
                            probe_scales=args.probe_scales)
        print(render(figures), flush=True)
        result = asdict(figures)
    if args.site or args.site_only:
        site = _site_figures(args.site_scale)
        print(f"report site (51 x 24): scorecard p95 {site['scorecard_p95_ms']} ms (goal < 300), "
              f"{site['scorecard_vs_query']}x the same query on the warehouse (goal < 3x); "
              f"{site.get('concurrent_users')} users for {site.get('concurrent_seconds')} s: "
              f"{site.get('concurrent_requests')} requests, {site.get('concurrent_errors')} "
              "errors", flush=True)
        result["site"] = site
    if getattr(args, "instance", False) or instance_only:
        from bdt_platform.bench import instance_bench

        storages = instance_bench.run_instance_bench(
            args.pg_url, partitions=args.instance_partitions, repeat=args.instance_repeat)
        print(instance_bench.render(storages), flush=True)
        result["instance"] = instance_bench.as_dicts(storages)
    payload = json.dumps(result, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(payload + "\n")
    print(payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
