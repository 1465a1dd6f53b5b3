"""Where the feed loaders' CPU work runs (``feeds.workers``): the policy, and what crosses the
process boundary (results, rejections with their failures, and errors)."""

import datetime as dt
import os
import pickle

import pytest

from bdt_platform.feeds import parsing, rejections, workers

from . import bad_files as bf

MONTH = dt.date(2024, 3, 1)


def test_runs_of_many_files_use_one_worker_per_core_and_small_ones_none(monkeypatch):
    monkeypatch.setattr(workers, "usable_cores", lambda: 8)
    assert workers.worker_count(-1, workers.PARALLEL_MIN_FILES - 1) == 0
    assert workers.worker_count(-1, workers.PARALLEL_MIN_FILES) == workers.MAX_WORKERS
    assert workers.worker_count(0, 10_000) == 0 and workers.worker_count(3, 1) == 3
    monkeypatch.setattr(workers, "usable_cores", lambda: 1)
    assert workers.worker_count(-1, 10_000) == 0  # one core: a worker would only compete
    monkeypatch.undo()
    assert 1 <= workers.usable_cores() <= (os.cpu_count() or 1)


def _chunk() -> list[tuple[str, bytes, str, dt.date]]:
    bad = bf.CASES_BY_ID[next(case.id for case in bf.CASES if case.feed == "eligibility"
                              and case.rule not in ("file_not_empty",))]
    return [(bf.filename("eligibility", "PA", MONTH), bf.good_file("eligibility", "PA", MONTH),
             "PA", MONTH),
            (bad.filename("NJ", MONTH), bad.data("NJ", MONTH), "NJ", MONTH),
            (bf.filename("eligibility", "NY", MONTH), bf.good_file("eligibility", "NY", MONTH),
             "NY", MONTH)]


def test_a_worker_prepares_a_chunk_exactly_as_this_process_does():
    chunk = _chunk()
    here = parsing.prepare_files("eligibility", chunk, bf.TOKEN_KEY)
    with workers.chunk_runner(2) as runner:
        there = runner.submit(parsing.prepare_files, "eligibility", chunk, bf.TOKEN_KEY).result()
    assert here.process == os.getpid() and there.process != os.getpid()
    assert [v is None for v in there.verdicts] == [True, False, True]
    # The rejection crossed the process boundary whole: rules, columns, counts, examples.
    assert there.verdicts[1].failures == here.verdicts[1].failures
    assert str(there.verdicts[1]) == str(here.verdicts[1])
    assert there.rows == here.rows and there.table.equals(here.table)


def test_a_rejection_pickles_with_its_failures():
    rejected = parsing.prepare_files("eligibility", _chunk(), bf.TOKEN_KEY).verdicts[1]
    back = pickle.loads(pickle.dumps(rejected))
    assert isinstance(back, rejections.FileRejected) and back.failures == rejected.failures
    assert back.rules == rejected.rules and back.failures


@pytest.mark.parametrize("processes", [0, 1])
def test_an_error_in_the_work_reaches_the_run(processes):
    """Anything but a rejection (a bug, a crash) fails the run where it is collected."""
    with workers.chunk_runner(processes) as runner:
        future = runner.submit(parsing.prepare_files, "no_such_feed", _chunk(), bf.TOKEN_KEY)
        with pytest.raises(KeyError, match="no_such_feed"):
            future.result()


def test_a_feed_of_small_files_is_cut_into_chunks_for_every_worker():
    """Bytes alone would make the year's 612 outcome files (~1.5 KB each) one chunk: one
    worker busy, the other idle. With workers, a chunk also closes at ``chunk_file_limit``
    files (at least ``CHUNKS_PER_WORKER`` chunks per worker, never under ``MIN_CHUNK_FILES``)."""
    from bdt_platform.feeds import file_assets
    from bdt_platform.feeds.specs import ALL_SPECS

    assert workers.chunk_file_limit(612, 0) is None  # in-process: bytes decide
    assert workers.chunk_file_limit(612, 2) == 77  # 612 / (2 workers x 4 chunks), rounded up
    assert workers.chunk_file_limit(20, 2) == workers.MIN_CHUNK_FILES

    months = [dt.date(2024, m, 1) for m in range(1, 8)]

    def chunk_sizes(chunk_files):
        with workers.chunk_runner(0) as runner:
            loader = file_assets._ChunkLoader(None, ALL_SPECS["outcomes"], None, None,
                                              None, bf.TOKEN_KEY, runner, chunk_files)
            for month in months:
                loader.add(file_assets._Incoming(
                    f"{month:%Y-%m-%d}|PA", "PA", month, bf.filename("outcomes", "PA", month),
                    bf.good_file("outcomes", "PA", month), dt.datetime.now(dt.timezone.utc)))
            loader._submit()  # what ``land_all`` sends last
            chunks = [(len(chunk), future.result()) for chunk, future in loader.in_flight]
        assert all(v is None for _, prepared in chunks for v in prepared.verdicts)
        assert sum(sum(prepared.rows) for _, prepared in chunks) == sum(
            len(bf.good_rows("outcomes", "PA", month)) for month in months)
        return [size for size, _ in chunks]

    assert chunk_sizes(3) == [3, 3, 1]
    assert chunk_sizes(None) == [7]  # a few KB: far below the chunk's bytes


def test_the_fork_server_can_start_before_the_run_needs_it(tmp_path):
    """``bdt ingest`` starts the workers' fork server first thing, so that its imports overlap
    Dagster's start-up. In a fresh process: the server is running (a child process whose
    command line is multiprocessing's fork server, preloading the parsing code) before any
    pool exists."""
    import subprocess
    import sys

    if "forkserver" not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip("no fork server on this platform")
    script = (
        "import os, sys\n"
        "from bdt_platform.feeds import workers\n"
        "workers.usable_cores = lambda: 2\n"
        "import time\n"
        "started = workers.start_server_early()\n"
        "for _ in range(100):  # a child shows its own command line once it has exec'd\n"
        "    children = [int(pid) for task in os.listdir('/proc/self/task')\n"
        "                for pid in open(f'/proc/self/task/{task}/children').read().split()]\n"
        "    lines = [open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode()\n"
        "             for pid in children]\n"
        "    servers = [line for line in lines if 'from multiprocessing.forkserver' in line]\n"
        "    if servers:\n"
        "        break\n"
        "    time.sleep(0.1)\n"
        "print(started, servers)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.startswith("True ["), out
    assert "multiprocessing.forkserver" in out and "bdt_platform.feeds.worker_start" in out


def _modules_imported_by(feed, files, pii_key):
    import sys

    before = set(sys.modules)
    prepared = parsing.prepare_files(feed, files, pii_key)
    return prepared.verdicts, sorted(set(sys.modules) - before)


def test_workers_start_with_pandera_warmed_up():
    """Pandera loads its validation backends (and hypothesis's strategies, when installed) on
    its first validation: ~0.3 s of CPU that every worker paid on its first chunk. The fork
    server pays it once (``worker_start``), so a worker's first chunk imports nothing."""
    with workers.chunk_runner(1) as runner:
        for feed in ("eligibility", "outcomes", "mailreturns", "nudges"):
            verdicts, imported = runner.submit(
                _modules_imported_by, feed,
                [(bf.filename(feed, "PA", MONTH), bf.good_file(feed, "PA", MONTH), "PA", MONTH)],
                bf.TOKEN_KEY).result()
            assert verdicts == [None] and imported == [], feed


def _killed(feed, files, pii_key, spill_dir=None):
    """A chunk's work that ends as the kernel's out-of-memory killer ends a process."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_chunk_fails_the_load_naming_its_files():
    """A worker that dies (here SIGKILL, as the out-of-memory killer sends) fails the load with
    the feed, the chunk's files and what to do, instead of concurrent.futures' bare
    BrokenProcessPool."""
    from bdt_platform.feeds import file_assets
    from bdt_platform.feeds.specs import ALL_SPECS

    months = [dt.date(2024, m, 1) for m in (1, 2, 3)]
    with workers.chunk_runner(1) as runner:
        loader = file_assets._ChunkLoader(None, ALL_SPECS["outcomes"], None, None,
                                          None, bf.TOKEN_KEY, runner, prepare=_killed)
        for month in months:
            loader.add(file_assets._Incoming(
                f"{month:%Y-%m-%d}|PA", "PA", month, bf.filename("outcomes", "PA", month),
                bf.good_file("outcomes", "PA", month), dt.datetime.now(dt.timezone.utc)))
        with pytest.raises(file_assets.WorkerDied) as died:
            loader.land_all(batch=None)
    message = str(died.value)
    assert message.startswith("outcomes: a worker process died while reading 3 file(s)")
    assert bf.filename("outcomes", "PA", months[0]) in message
    assert bf.filename("outcomes", "PA", months[-1]) in message
    assert "worker_processes: 0" in message and "stay in the inbox" in message


def _killed_archiving(root, storage_options, files):
    """Writing archive copies, ending as the kernel's out-of-memory killer ends a process."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_while_archiving_fails_the_load_saying_so(tmp_path):
    """A worker that dies while it writes a chunk's archive copies fails the load before the
    batch commits, saying it died while archiving them (not while reading)."""
    import dagster as dg

    from bdt_platform.feeds import file_assets
    from bdt_platform.feeds.provenance import FeedLoadReport
    from bdt_platform.feeds.specs import ALL_SPECS
    from bdt_platform.storage.lake import LakeResource
    from bdt_platform.storage.warehouse import DuckDBWarehouse

    months = [dt.date(2024, m, 1) for m in (1, 2)]
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with pytest.raises(file_assets.WorkerDied) as died:
        with dg.build_asset_context() as context, workers.chunk_runner(1) as runner, \
                warehouse.batch() as batch:
            loader = file_assets._ChunkLoader(
                context, ALL_SPECS["outcomes"], dg.AssetKey(["raw", "outcomes"]),
                LakeResource(root=str(tmp_path / "lake")), FeedLoadReport("outcomes"),
                bf.TOKEN_KEY, runner, store=_killed_archiving)
            for month in months:
                loader.add(file_assets._Incoming(
                    f"{month:%Y-%m-%d}|PA", "PA", month, bf.filename("outcomes", "PA", month),
                    bf.good_file("outcomes", "PA", month), dt.datetime.now(dt.timezone.utc)))
            loader.land_all(batch)
    assert str(died.value).startswith(
        "outcomes: a worker process died while archiving 2 file(s)")
    assert not warehouse.table_exists("raw.outcomes")


def _land_outcomes(lake, warehouse, months, processes):
    """Land one outcomes file per month in PA through the feed loader (``processes`` workers),
    in one warehouse batch; the files it landed."""
    import dagster as dg

    from bdt_platform.feeds import file_assets
    from bdt_platform.feeds.provenance import FeedLoadReport
    from bdt_platform.feeds.specs import ALL_SPECS

    received = dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone.utc)
    with dg.build_asset_context() as context, workers.chunk_runner(processes) as runner, \
            warehouse.batch() as batch:
        loader = file_assets._ChunkLoader(
            context, ALL_SPECS["outcomes"], dg.AssetKey(["raw", "outcomes"]),
            lake, FeedLoadReport("outcomes"), bf.TOKEN_KEY, runner, chunk_files=2)
        events = []
        for month in months:
            loader.add(file_assets._Incoming(
                f"{month:%Y-%m-%d}|PA", "PA", month, bf.filename("outcomes", "PA", month),
                bf.good_file("outcomes", "PA", month), received))
            events.extend(loader.land_finished(batch))
        return events + loader.land_all(batch)


@pytest.mark.parametrize("processes", [0, 1])
def test_archive_copies_are_written_before_the_commit_and_one_that_fails_fails_the_load(
        tmp_path, processes):
    """The accepted files' archive copies are written beside the warehouse write (by the
    workers, when the run has them); the batch commits only once every copy is written and
    read back. A copy that cannot be written fails the load, and the warehouse keeps its rows."""
    from bdt_platform.storage.lake import LakeResource
    from bdt_platform.storage.warehouse import DuckDBWarehouse

    lake = LakeResource(root=str(tmp_path / "lake"))
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    first = [dt.date(2024, m, 1) for m in (1, 2, 3)]
    landed = _land_outcomes(lake, warehouse, first, processes)
    assert [file.incoming.partition for file in landed] == [f"{m:%Y-%m-%d}|PA" for m in first]
    for file, month in zip(landed, first):
        path = file.archived.path
        assert path.startswith(f"archive/outcomes/month={month:%Y-%m}/state=PA/20240601T120000Z_")
        assert (tmp_path / "lake" / path).read_bytes() == bf.good_file("outcomes", "PA", month)
    count = "SELECT count(*) AS n FROM raw.outcomes"
    landed = int(warehouse.query(count)["n"][0])
    assert landed > 0

    # April's partition folder cannot be made: a file is where it would go.
    (tmp_path / "lake" / "archive" / "outcomes" / "month=2024-04").write_text("in the way")
    with pytest.raises(OSError):
        _land_outcomes(lake, warehouse, [dt.date(2024, m, 1) for m in (4, 5, 6)], processes)
    assert int(warehouse.query(count)["n"][0]) == landed


@pytest.mark.parametrize("feed", bf.FEEDS)
def test_a_chunk_read_as_one_frame_gives_each_file_what_it_gets_alone(feed):
    """``prepare_files`` joins a chunk's files into one frame to validate and type them. Every
    file still gets exactly the verdict it gets alone (the same failures, lines and examples),
    and the accepted files exactly their own rows, in order, whichever files around them were
    rejected, at which step."""
    import pyarrow as pa

    states = ["PA", "NJ", "NY", "OH", "CA"]
    chunk = [(bf.filename(feed, state, MONTH), bf.good_file(feed, state, MONTH), state, MONTH)
             for state in states]
    for number, case in enumerate(case for case in bf.CASES if case.feed == feed):
        state = states[number % len(states)]
        chunk.insert(1 + 2 * number % (len(chunk) + 1),
                     (case.filename(state, MONTH), case.data(state, MONTH), state, MONTH))
    together = parsing.prepare_files(feed, chunk, bf.TOKEN_KEY)
    alone = [parsing.prepare_files(feed, [file], bf.TOKEN_KEY) for file in chunk]
    assert len(together.verdicts) == len(chunk) > len(states)
    for file, verdict, own in zip(chunk, together.verdicts, alone):
        if own.verdicts[0] is None:
            assert verdict is None, file[0]
        else:
            assert verdict is not None and verdict.failures == own.verdicts[0].failures, file[0]
    accepted = [own for own in alone if own.verdicts[0] is None]
    assert len(accepted) >= len(states)
    assert together.rows == [own.rows[0] for own in accepted]
    assert together.table.equals(pa.concat_tables([own.table for own in accepted]))


def test_a_few_big_files_are_worth_workers_too(monkeypatch):
    from bdt_platform.feeds import workers as w

    monkeypatch.setattr(w, "usable_cores", lambda: 2)
    assert w.worker_count(-1, 4) == 0
    assert w.worker_count(-1, 4, w.PARALLEL_MIN_BYTES) == 2
    assert w.worker_count(-1, w.PARALLEL_MIN_FILES) == 2
    assert w.worker_count(0, 4, w.PARALLEL_MIN_BYTES) == 0
