"""``generate``: write a synthetic, contract-true set of partner drops and case-management rows.

For every state x month it drops, for each of the four feeds, one file per partner that sends the
feed (``partners.feed_partners``) into ``inbox/<partner>/`` (atomically, see ``writer``): two
eligibility files (the state agency's and communitycare's, sharing the month's eligible people as
``split`` says), and the state agency's outcomes, mailvendor's mail returns and nudgevendor's
nudges - five files per state-month. It records the month's calls, applications and clients in the
case-management SQLite database. Output is a pure function of the arguments: the same arguments
give byte-identical files and identical database rows, and a state's (or a month's) output does
not depend on which other states or months are generated alongside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from bdt_platform.feeds.filenames import drop_filename
from bdt_platform.core.partitions import STATES
from bdt_platform.synthetic import casemgmt, feeds
from bdt_platform.synthetic.funnel import simulate_month
from bdt_platform.synthetic.people import build_pool
from bdt_platform.synthetic.writer import csv_bytes, gzip_bytes, remove_tmp_dir, write_atomic


@dataclass
class GenerationSummary:
    """What one ``generate`` call wrote.

    ``files``: every partner file, in the order written. ``rows``: data rows per feed
    (``eligibility``, ``outcomes``, ``mailreturns``, ``nudges``), summed over the feed's
    partners' files, and per case-management table (``clients`` counts distinct clients
    written, ``applications``, ``calls``). So ``rows["eligibility"]`` is the total of data rows
    in the agency's and communitycare's eligibility files: a person both partners list counts
    twice (it is not the number of distinct eligible people, which is smaller).
    """

    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    states: list[str] = field(default_factory=list)
    months: list[dt.date] = field(default_factory=list)
    seed: int = 42
    scale: float = 1.0


def generate(inbox: Path, casemgmt_path: Path, *, states: list[str], months: list[dt.date],
             scale: float = 1.0, seed: int = 42, pii_key: str,
             gzip_feeds: tuple[str, ...] = ("nudges",),
             progress: Callable[[str], None] | None = None) -> GenerationSummary:
    """Generate ``states`` x ``months`` (first-of-month dates) at ``scale`` (1.0 is about 300
    eligible people per state-month, about 360 eligibility rows over its two files) from
    ``seed``.

    ``pii_key`` is the tokenization key (``BDT_PII_KEY``): the nudge vendor's ``recipient_key`` is
    the person token we would have sent it. Feeds named in ``gzip_feeds`` are written as
    ``.csv.gz``. ``progress`` is called once per state with a one-line summary.
    """
    states = list(dict.fromkeys(states))
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ValueError(f"unknown state code(s): {', '.join(unknown)}")
    months = sorted(dict.fromkeys(months))
    not_first = [m for m in months if m.day != 1]
    if not_first:
        raise ValueError(f"months must be first-of-month dates, got {not_first[0].isoformat()}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    if not pii_key:
        raise ValueError("pii_key is required (it keys the person tokens in the nudges feed)")
    unknown_feeds = set(gzip_feeds) - set(feeds.FEEDS)
    if unknown_feeds:
        raise ValueError(f"unknown feed(s) in gzip_feeds: {', '.join(sorted(unknown_feeds))}")
    scale = float(scale)
    inbox = Path(inbox)

    summary = GenerationSummary(states=states, months=months, seed=seed, scale=scale,
                                rows={name: 0 for name in (*feeds.FEEDS, *casemgmt.TABLES)})
    with closing(casemgmt.connect(Path(casemgmt_path))) as connection:
        for state in states:
            pool = build_pool(state, seed=seed, scale=scale, pii_key=pii_key)
            state_files, state_rows, clients = 0, 0, set()
            for month in months:
                activity = simulate_month(pool, month, seed=seed, scale=scale)
                for feed in feeds.FEEDS:
                    compressed = feed in gzip_feeds
                    for partner, columns in feeds.partner_files(feed, pool, activity, seed=seed):
                        data = csv_bytes(columns)
                        if compressed:
                            data = gzip_bytes(data)
                        name = drop_filename(partner, state, month, feed, gzip=compressed)
                        summary.files.append(write_atomic(inbox, Path(partner) / name, data))
                        n_rows = len(next(iter(columns.values())))
                        summary.rows[feed] += n_rows
                        state_files, state_rows = state_files + 1, state_rows + n_rows
                written = casemgmt.write_month(connection, pool, activity)
                clients.update(activity.calls["person"].tolist())
                for table in ("applications", "calls"):
                    summary.rows[table] += written[table]
                    state_rows += written[table]
            casemgmt.finalize(connection, [state])
            summary.rows["clients"] += len(clients)
            state_rows += len(clients)
            if progress is not None:
                progress(f"generated {state}: {state_files} files, {state_rows:,} rows")
    remove_tmp_dir(inbox)
    return summary
