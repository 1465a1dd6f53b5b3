"""How long one inbox-sensor decision takes with many files waiting: list + scan + cursor.

    python -m bdt_platform.bench.sensor_tick [--files 10000]

Creates ``--files`` well-named partner drops (all four feeds, each from every partner that sends
it as the synthetic generator does - ``synthetic.partners.feed_partners`` - every state, as many
months as needed) in a temporary local inbox folder and in the inbox of a real SFTP server on
127.0.0.1 (asyncssh, key authentication, known_hosts - the test server, in a process of its own as
a partner's server would be), then times, for each backend:

- ``first tick``: connect and list the inbox, decide with an empty cursor (every file is new: the
  first ``MAX_REQUESTS_PER_TICK`` become run requests, the rest wait for later ticks), and
  write and read back the cursor;
- ``next tick``: the same files still listed, decided with that cursor (what a tick costs while
  runs are in flight, or on a read-only server where landed files stay).

No Dagster runs are started: this is the sensor's own cost, which must stay well under its
30 s interval. Prints a table and one JSON line.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bdt_platform.core.runs import quiet_warnings

quiet_warnings()  # before the asset modules load: keep the output to the figures

from bdt_platform.core import partitions as parts  # noqa: E402
from bdt_platform.feeds.filenames import FILE_FEEDS, drop_filename  # noqa: E402
from bdt_platform.core.inbox_interface import Inbox  # noqa: E402
from bdt_platform.inbox.folder import FolderInbox  # noqa: E402
from bdt_platform.inbox.sensor import (INTERVAL_SECONDS, InboxCursor,  # noqa: E402
                                       collector_paused, decide)
from bdt_platform.inbox.sftp import SftpInbox  # noqa: E402
from bdt_platform.synthetic.partners import feed_partners  # noqa: E402


def make_drops(inbox_root: Path, count: int, mtime: float) -> int:
    """Write ``count`` small, well-named files under ``<inbox_root>/<partner>/``: per month,
    per state, per feed, one file from each partner of ``feed_partners(feed, state)``."""
    written = 0
    month = parts.month_start("2000-01-01")
    while written < count:
        for state in parts.STATES:
            for feed in FILE_FEEDS:
                for partner in feed_partners(feed, state):
                    if written == count:
                        return written
                    path = inbox_root / partner / drop_filename(partner, state, month, feed)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"header\n" + str(written).encode() + b"\n")
                    os.utime(path, (mtime, mtime))
                    written += 1
        month = parts.add_months(month, 1)
    return written


def time_ticks(inbox: Inbox) -> dict:
    """Seconds for a first tick (empty cursor) and a next tick (that cursor), each split into
    listing and deciding (scan + cursor out and back in)."""
    figures = {}
    cursor_text = None
    for phase in ("first_tick", "next_tick"):
        with collector_paused():  # as the sensor lists and decides (evaluate_inbox)
            started = time.perf_counter()
            listing = inbox.list_files()
            listed = time.perf_counter()
            decision = decide(listing, InboxCursor.parse(cursor_text))
        cursor_text = decision.cursor.dump()
        InboxCursor.parse(cursor_text)
        done = time.perf_counter()
        figures[phase] = {
            "files": len(listing),
            "list_s": round(listed - started, 3),
            "decide_s": round(done - listed, 3),
            "total_s": round(done - started, 3),
            "files_per_s": round(len(listing) / (done - started)),
            "run_requests": len(decision.requests),
            "cursor_bytes": len(cursor_text),
        }
    return figures


def time_sftp_ticks(workdir: Path, count: int, mtime: float) -> dict:
    """``time_ticks`` over an SFTP inbox of ``count`` drops. The test server runs in a process
    of its own: a partner's server is never inside the sensor's process, and one sharing its
    interpreter lock would add the server's work to the sensor's time."""
    # The test suite's SFTP server (a real asyncssh server over TCP); imported here only.
    from bdt_platform.synthetic.sftp_server import server_process

    make_drops(workdir / "root" / "inbox", count, mtime)
    with server_process(workdir) as server:
        inbox = SftpInbox.from_url(server.url("/inbox"), str(server.client_key_file),
                                   str(server.known_hosts_file))
        try:
            return time_ticks(inbox)
        finally:
            inbox.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bdt_platform.bench.sensor_tick",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="inbox files (default 10000)")
    args = parser.parse_args(argv)
    if args.files < 1:
        parser.error("--files must be positive")

    results = {}
    with tempfile.TemporaryDirectory(prefix="bdt-bench-") as tmp:
        work = Path(tmp)
        old = time.time() - 3600
        make_drops(work / "folder" / "inbox", args.files, old)
        results["folder"] = time_ticks(FolderInbox(root=str(work / "folder" / "inbox")))
        results["sftp"] = time_sftp_ticks(work / "sftp", args.files, old)

    header = (f"{'inbox':<7} {'tick':<11} {'files':>7} {'list s':>8} {'decide s':>9} "
              f"{'total s':>8} {'files/s':>9} {'runs':>5} {'cursor B':>9}")
    print(header)
    print("-" * len(header))
    for backend, phases in results.items():
        for phase, row in phases.items():
            print(f"{backend:<7} {phase.replace('_', ' '):<11} {row['files']:>7,} "
                  f"{row['list_s']:>8.3f} {row['decide_s']:>9.3f} {row['total_s']:>8.3f} "
                  f"{row['files_per_s']:>9,} {row['run_requests']:>5} {row['cursor_bytes']:>9,}")
    worst = max(row["total_s"] for phases in results.values() for row in phases.values())
    print(f"slowest tick: {worst:.2f}s of the sensor's {INTERVAL_SECONDS}s interval "
          f"({100 * worst / INTERVAL_SECONDS:.1f}%)")
    print(json.dumps({"benchmark": "sensor_tick", "files": args.files,
                      "interval_seconds": INTERVAL_SECONDS, "slowest_tick_s": worst,
                      **results}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
