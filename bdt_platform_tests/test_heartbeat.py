"""Progress lines while a run works (``core.heartbeat``): a line every interval, naming the run,
how long it has run and what its steps last noted, and nothing kept outside a heartbeat."""

import threading
import time

from bdt_platform.core import heartbeat


def test_a_heartbeat_says_what_the_run_last_noted_and_how_long_ago():
    lines = []
    got_two = threading.Event()

    def write(line):
        lines.append(line)
        if len(lines) >= 2:
            got_two.set()

    heartbeat.note("before any heartbeat")  # nobody listening: not kept
    with heartbeat.Heartbeat("ingest_feeds (51 state(s) x 12 month(s))", every=0.05,
                             write=write) as beat:
        assert got_two.wait(5)
        assert "before any heartbeat" not in lines[0]
        assert lines[0].startswith("  ... ingest_feeds (51 state(s) x 12 month(s)): running ")
        heartbeat.note("eligibility: 120/612 partitions read, 2,301,554 rows staged")
        count = len(lines)
        deadline = time.monotonic() + 5
        while len(lines) < count + 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    noted = [line for line in lines if "eligibility: 120/612 partitions read" in line]
    assert noted and noted[-1].endswith("s ago)"), lines
    assert beat.lines == lines
    stopped = len(lines)
    time.sleep(0.2)
    assert len(lines) == stopped  # the thread ended with the block


def test_a_run_shorter_than_the_interval_prints_nothing():
    lines = []
    with heartbeat.Heartbeat("build_warehouse", every=30.0, write=lines.append):
        heartbeat.note("dbt build: 1 result(s) so far")
    assert lines == []


def test_a_broken_stream_does_not_stop_the_beat():
    calls = []

    def write(line):
        calls.append(line)
        raise OSError("stderr closed")

    with heartbeat.Heartbeat("x", every=0.02, write=write):
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert len(calls) >= 2
