"""Bad partner files through the real load path: ``bdt ingest`` in-process on a temp home.

One module-scoped world, three ingests (one Dagster run each):

1. baseline: good files of every feed for a 2 x 2 block of partitions;
2. the whole corpus (``bad_files.CASES``), each case in its own state x month partition - some
   of them re-sends of a baseline partition - plus good files for other partitions and feeds;
3. good files for two partitions whose earlier file was quarantined.

Checked from outside: the lake's quarantine folder, the warehouse, the printed lines, the exit
codes and everything the Dagster instance recorded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import contextlib
import io
import json
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.filenames import partner_of
from bdt_platform.inbox.ingest import ingest
from bdt_platform.core.runs import instance_for

from . import bad_files as bf
from .conftest import make_settings

STATES = list(parts.STATES[:11])  # AK .. DE: contiguous, so one run covers them
MONTHS = parts.month_range("2024-01..2024-07")
PAIRS = [(state, month) for month in MONTHS for state in STATES]
assert len(PAIRS) >= len(bf.CASES) + 2
CASE_AT = {case.id: PAIRS[i] for i, case in enumerate(bf.CASES)}
BASELINE = [(state, month) for month in MONTHS[:2] for state in STATES[:2]]
SPARE = PAIRS[len(bf.CASES):]  # partitions no case uses: good files of every feed
# Phase 3: a good file for partitions whose earlier file was quarantined (adjacent states).
GOOD_AFTER_BAD = [case.id for case in bf.CASES
                  if CASE_AT[case.id][1] == MONTHS[0] and CASE_AT[case.id][0] in STATES[2:4]]


def _drop(inbox: Path, feed: str, name: str, data: bytes, mtime: float) -> Path:
    path = inbox / partner_of(name) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def _raw(warehouse, feed: str) -> pd.DataFrame:
    if not warehouse.table_exists(f"raw.{feed}"):
        return pd.DataFrame(columns=["state", "month"])
    frame = warehouse.query(f"SELECT * FROM raw.{feed}")
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    return frame


def _partition(frame: pd.DataFrame, state: str, month: dt.date) -> pd.DataFrame:
    part = frame[(frame["state"] == state) & (frame["month"] == month)]
    return part.sort_values(list(part.columns)).reset_index(drop=True)


@pytest.fixture(scope="module", params=["in_process", "worker_processes"])
def world(tmp_path_factory, request):
    """The corpus landed twice: in the run's own process, and with every feed's files read,
    validated and tokenized in two worker processes (as a run of many files does; the
    rejections then travel back from the workers). Every test below holds for both."""
    from bdt_platform.definitions import build_definitions
    from bdt_platform.feeds import workers

    with pytest.MonkeyPatch.context() as patch:
        if request.param == "worker_processes":
            patch.setattr(workers, "worker_count", lambda requested, files: 2)
        yield from _world(tmp_path_factory, build_definitions, request.param)


def _world(tmp_path_factory, build_definitions, mode: str):
    home = tmp_path_factory.mktemp("quarantine") / "home"
    settings = make_settings(home)
    defs = build_definitions(settings)
    instance = instance_for(settings)
    resources = defs.resources
    inbox, warehouse = Path(settings.inbox), resources["warehouse"]
    console = io.StringIO()  # what Dagster's console logger prints during the runs
    clock = 1_700_000_000.0

    def run_ingest(lines: list[str]):
        return ingest(defs, instance, resources["inbox"], resources["lake"], warehouse, None,
                      settle_seconds=0, echo=lines.append)

    with contextlib.redirect_stderr(console), contextlib.redirect_stdout(console):
        # 1. Baseline: good files of every feed.
        baseline_files = {}
        for state, month in BASELINE:
            for feed in bf.FEEDS:
                name = bf.filename(feed, state, month)
                baseline_files[(feed, state, month)] = _drop(
                    inbox, feed, name, bf.good_file(feed, state, month), clock)
        lines1: list[str] = []
        first = run_ingest(lines1)
        before = {feed: _raw(warehouse, feed) for feed in bf.FEEDS}

        # 2. The corpus, plus good files elsewhere.
        clock += 3600
        bad, good = {}, {}
        for case in bf.CASES:
            state, month = CASE_AT[case.id]
            data = case.data(state, month)
            bad[case.id] = (_drop(inbox, case.feed, case.filename(state, month), data, clock),
                            data)
            other = bf.FEEDS[(bf.FEEDS.index(case.feed) + 1) % len(bf.FEEDS)]
            if (state, month) not in BASELINE:
                good[(other, state, month)] = _drop(inbox, other, bf.filename(other, state, month),
                                                    bf.good_file(other, state, month), clock)
        for state, month in SPARE:
            for feed in bf.FEEDS:
                gz = feed == "nudges"
                good[(feed, state, month)] = _drop(
                    inbox, feed, bf.filename(feed, state, month, gz),
                    bf.good_file(feed, state, month, gz), clock)
        lines2: list[str] = []
        second = run_ingest(lines2)
        after_corpus = {feed: _raw(warehouse, feed) for feed in bf.FEEDS}

        # 3. Good files for partitions whose earlier file was quarantined.
        clock += 3600
        for case_id in GOOD_AFTER_BAD:
            case = bf.CASES_BY_ID[case_id]
            state, month = CASE_AT[case_id]
            _drop(inbox, case.feed, bf.filename(case.feed, state, month),
                  bf.good_file(case.feed, state, month), clock)
        lines3: list[str] = []
        third = run_ingest(lines3)
        after_fix = {feed: _raw(warehouse, feed) for feed in bf.FEEDS}

    yield {"mode": mode, "settings": settings, "instance": instance, "lake": Path(settings.lake),
           "first": first, "second": second, "third": third,
           "lines": (lines1, lines2, lines3), "console": console.getvalue(),
           "before": before, "after_corpus": after_corpus, "after_fix": after_fix,
           "bad": bad, "good": good, "baseline_files": baseline_files}
    instance.dispose()


def test_baseline_loads_in_one_run(world):
    first = world["first"]
    assert first.exit_code == 0, world["lines"][0]
    assert len(first.runs) == 1
    assert [f.status for f in first.files] == ["loaded"] * len(BASELINE) * len(bf.FEEDS)
    for feed in bf.FEEDS:
        assert len(world["before"][feed]) == len(BASELINE) * len(bf.good_rows(feed, "AK",
                                                                             MONTHS[0]))


def test_files_are_read_where_the_run_says(world):
    """Each chunk's log line names the worker process that read it, when one did."""
    import re

    messages = [entry.user_message
                for ingest in (world["first"], world["second"], world["third"])
                for run in ingest.runs for entry in world["instance"].all_logs(run.run_id)]
    chunks = [re.search(r"rows staged for raw\.\w+ in [0-9.]+s(?:, read in worker (\d+))?$",
                        message) for message in messages]
    chunks = [found.group(1) for found in chunks if found]
    assert len(chunks) >= 2 * len(bf.FEEDS) + 1  # the first two ingests load every feed
    workers = {int(pid) for pid in chunks if pid}
    if world["mode"] == "worker_processes":
        assert all(chunks) and workers and os.getpid() not in workers
    else:
        assert not workers


def test_corpus_ingest_exits_1_and_prints_one_line_per_file(world):
    second, lines = world["second"], world["lines"][1]
    assert second.exit_code == 1
    assert len(second.runs) == 1  # the whole corpus in one Dagster run
    inbox = Path(world["settings"].inbox)
    files = [str(path.relative_to(inbox)) for path, _ in world["bad"].values()]
    files += [str(path.relative_to(inbox)) for path in world["good"].values()]
    file_lines = [line for line in lines if line.startswith(("loaded ", "quarantined "))]
    assert len(file_lines) == len(files) == len(second.files)
    for path in files:
        assert len([line for line in file_lines if f" {path} " in line]) == 1, path
    statuses = {f.path: f.status for f in second.files}
    for path, _ in world["bad"].values():
        assert statuses[str(path.relative_to(inbox))] == "quarantined"
    for path in world["good"].values():
        assert statuses[str(path.relative_to(inbox))] == "loaded"


@pytest.mark.parametrize("case", bf.CASES, ids=[case.id for case in bf.CASES])
def test_case_quarantined_byte_for_byte_with_reason(world, case):
    state, month = CASE_AT[case.id]
    _, data = world["bad"][case.id]
    name = case.filename(state, month)
    folder = world["lake"] / "quarantine" / case.partner(state)
    assert (folder / name).read_bytes() == data
    reason = json.loads((folder / f"{name}.reason.json").read_text())
    assert reason["file"] == name and reason["feed"] == case.feed
    assert reason["partner"] == case.partner(state)
    assert reason["partition"] == parts.partition_key(state, month)
    assert reason["sha256"] == hashlib.sha256(data).hexdigest()
    assert reason["size_bytes"] == len(data)
    assert {f["rule"] for f in reason["failures"]} == case.rules
    failure = next(f for f in reason["failures"] if f["rule"] == case.rule)
    assert failure["column"] == case.column
    assert failure["count"] >= 1 and failure["message"]
    assert len(failure["examples"]) <= 20
    assert case.rule in reason["summary"]
    result = next(f for f in world["second"].files if f.path.endswith("/" + name))
    assert case.rule in result.detail and f"quarantine/{case.partner(state)}/{name}" in result.detail


@pytest.mark.parametrize("case", bf.CASES, ids=[case.id for case in bf.CASES])
def test_case_loads_nothing_and_keeps_earlier_rows(world, case):
    state, month = CASE_AT[case.id]
    now = _partition(world["after_corpus"][case.feed], state, month)
    if (state, month) in BASELINE:  # a bad re-send: the good rows stay
        earlier = _partition(world["before"][case.feed], state, month)
        assert len(earlier) > 0
        pd.testing.assert_frame_equal(now, earlier)
        assert set(now["_source_file"]) == {bf.filename(case.feed, state, month)}
    else:
        assert len(now) == 0


def test_other_partitions_untouched_and_good_files_loaded(world):
    good = {(feed, state, month) for feed, state, month in world["good"]}
    for feed in bf.FEEDS:
        before, after = world["before"][feed], world["after_corpus"][feed]
        loaded_now = {(s, m) for f, s, m in good if f == feed}
        keep = ~pd.Series([(s, m) in loaded_now for s, m in zip(after["state"], after["month"])],
                          index=after.index, dtype=bool)
        untouched = after[keep].sort_values(list(after.columns)).reset_index(drop=True)
        pd.testing.assert_frame_equal(
            untouched, before.sort_values(list(before.columns)).reset_index(drop=True))
        for state, month in loaded_now:
            rows = _partition(after, state, month)
            assert len(rows) == len(bf.good_rows(feed, state, month)), (feed, state, month)


def test_valid_odd_values_are_stored_verbatim(world):
    eligibility = world["before"]["eligibility"]
    expected = bf.good_rows("eligibility", *BASELINE[0])
    stored = _partition(eligibility, *BASELINE[0]).set_index("first_name")
    for row in expected:
        out = stored.loc[row["first_name"]]
        assert out["last_name"] == row["last_name"]
        assert out["address_line1"] == row["address_line1"]
        if row["address_line2"]:
            assert out["address_line2"] == row["address_line2"]
    assert "ssn" not in eligibility.columns
    assert eligibility["person_token"].str.fullmatch(r"tok_[0-9a-f]{32}").all()
    outcomes = _partition(world["before"]["outcomes"], *BASELINE[0])
    assert f'APP, "quoted" {BASELINE[0][0]}-202401' in set(outcomes["application_id"])


def test_failed_contract_check_is_recorded_with_the_rejections(world):
    [run] = world["second"].runs
    evaluations = {e.asset_key.path[-1]: e for e in run.check_evaluations()}
    assert set(evaluations) == set(bf.FEEDS)
    for feed, evaluation in evaluations.items():
        assert evaluation.check_name == "contract" and not evaluation.passed
        rejected = evaluation.metadata["rejected"].value
        expected = {parts.partition_key(*CASE_AT[c.id]) for c in bf.CASES if c.feed == feed}
        assert {item["partition"] for item in rejected} == expected
        assert evaluation.metadata["files_rejected"].value == len(expected)
        description = evaluation.description or ""
        assert "rejected and quarantined" in description
        for item in rejected[:20]:  # each rejected file and its reason, as the UI shows them
            assert f"`{item['file']}` [{item['partition']}]: {item['reason']}" in description
        if len(rejected) > 20:
            assert f"and {len(rejected) - 20} more" in description
    assert not run.success  # the blocking check stops anything downstream in the run


def test_good_file_after_a_bad_one_loads(world):
    third = world["third"]
    assert third.exit_code == 0, world["lines"][2]
    assert len(GOOD_AFTER_BAD) == 2 and len(third.runs) == 1
    assert [f.status for f in third.files] == ["loaded"] * 2
    for case_id in GOOD_AFTER_BAD:
        case = bf.CASES_BY_ID[case_id]
        state, month = CASE_AT[case_id]
        assert len(_partition(world["after_corpus"][case.feed], state, month)) == 0
        rows = _partition(world["after_fix"][case.feed], state, month)
        assert len(rows) == len(bf.good_rows(case.feed, state, month))
        assert set(rows["_source_file"]) == {bf.filename(case.feed, state, month)}


def test_no_full_ssn_in_reasons_logs_or_instance(world):
    forbidden: set[str] = set()
    for state, month in PAIRS:
        forbidden |= bf.secrets(state, month)
    # The corpus does carry SSNs (else this test would prove nothing).
    carried = b"".join(data for _, data in world["bad"].values())
    assert any(s.encode() in carried for s in forbidden)
    reasons = list((world["lake"] / "quarantine").rglob("*.reason.json"))
    assert len(reasons) == len(bf.CASES)
    for path in reasons:
        assert not bf.leaked(path.read_text(), forbidden), path.name
    printed = "\n".join(line for lines in world["lines"] for line in lines)
    assert not bf.leaked(printed, forbidden)
    console = world["console"]
    assert "quarantined to quarantine/" in console  # the runs' error lines were captured
    assert not bf.leaked(console, forbidden)
    instance: dg.DagsterInstance = world["instance"]
    runs = instance.get_runs()
    assert len(runs) == 3
    for run in runs:
        for entry in instance.all_logs(run.run_id):
            assert not bf.leaked(dg.serialize_value(entry), forbidden), entry.message
    for feed in bf.FEEDS:
        assert not bf.leaked(world["after_fix"][feed].to_csv(), forbidden), feed
