"""Where the feed loaders' CPU work runs (``feeds.workers``): the policy, and what crosses the
process boundary (results, rejections with their failures, and errors)."""

import datetime as dt
import os
import pickle

import pytest

from bdt_platform.feeds import parsing, workers

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
    assert isinstance(back, parsing.FileRejected) and back.failures == rejected.failures
    assert back.rules == rejected.rules and back.failures


@pytest.mark.parametrize("processes", [0, 1])
def test_an_error_in_the_work_reaches_the_run(processes):
    """Anything but a rejection (a bug, a crash) fails the run where it is collected."""
    with workers.chunk_runner(processes) as runner:
        future = runner.submit(parsing.prepare_files, "no_such_feed", _chunk(), bf.TOKEN_KEY)
        with pytest.raises(KeyError, match="no_such_feed"):
            future.result()
