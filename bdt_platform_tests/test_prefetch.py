"""``bdt ingest`` reads inbox files ahead of its run (``feeds.prefetch``): a result is used only
for exactly the bytes it was read from, and a run that takes them lands the same rows as one
that reads every file itself."""

import datetime as dt
from pathlib import Path

import duckdb

from bdt_platform.feeds.definitions import build_feed_definitions
from bdt_platform.feeds import parsing, prefetch, rejections, workers
from bdt_platform.inbox.ingest import ingest
from bdt_platform.core.runs import instance_for
from bdt_platform.synthetic import generate

from . import bad_files as bf
from .conftest import make_settings

MONTH = dt.date(2024, 3, 1)
KEY = bf.TOKEN_KEY


def _files() -> list[tuple[str, bytes, str, dt.date]]:
    """Three eligibility files; the middle one breaks the contract (no header row)."""
    return [(bf.filename("eligibility", "PA", MONTH), bf.good_file("eligibility", "PA", MONTH),
             "PA", MONTH),
            (bf.filename("eligibility", "NJ", MONTH), b"1,2,3\n4,5,6\n", "NJ", MONTH),
            (bf.filename("eligibility", "NY", MONTH), bf.good_file("eligibility", "NY", MONTH),
             "NY", MONTH)]


def test_a_result_is_taken_once_and_only_for_the_same_bytes_and_key(read_ahead):
    files = _files()
    ahead = read_ahead()
    ahead.send("eligibility", files, KEY)
    name, data, state, month = files[0]
    assert ahead.take("eligibility", name, data, state, month, "another key") is None
    assert ahead.take("outcomes", name, data, state, month, KEY) is None
    assert ahead.take("eligibility", name, data, "NJ", month, KEY) is None
    assert ahead.take("eligibility", name, data, state, month, KEY) is not None
    assert ahead.take("eligibility", name, data, state, month, KEY) is None  # taken already
    name, data, state, month = files[2]
    assert ahead.take("eligibility", name, data + b"\n", state, month, KEY) is None  # changed
    assert ahead.take("eligibility", name, data, state, month, KEY) is None  # stale: dropped
    assert (ahead.sent, ahead.taken) == (3, 1)


def test_gathered_files_read_as_one_chunk_would(read_ahead):
    """Files read ahead in other chunks, gathered in another order, give what
    ``prepare_files`` gives for that chunk: verdicts, rows and the typed table."""
    files = _files()
    other = (bf.filename("eligibility", "OH", MONTH), bf.good_file("eligibility", "OH", MONTH),
             "OH", MONTH)
    ahead = read_ahead()
    ahead.send("eligibility", files, KEY)
    ahead.send("eligibility", [other], KEY)
    order = [other, files[2], files[1], files[0]]
    gathered = prefetch.Gathered([ahead.take("eligibility", *item, KEY) for item in order]
                                 ).result()
    direct = parsing.prepare_files("eligibility", order, KEY)
    assert [type(v) for v in gathered.verdicts] == [type(v) for v in direct.verdicts] == [
        type(None), type(None), rejections.FileRejected, type(None)]
    assert str(gathered.verdicts[2]) == str(direct.verdicts[2])
    assert gathered.rows == direct.rows and len(gathered.rows) == 3
    assert gathered.table.equals(direct.table)


def _sent(ahead) -> list[str]:
    """The files sent and not taken, in the order sent."""
    assert ahead.wait_for_the_run()
    return [key.filename for key in ahead._files]


def test_files_are_read_ahead_in_landing_order_up_to_the_budget_as_the_run_takes_them(
        tmp_path, monkeypatch):
    """Read ahead: every listed file in the order the run lands them (feed by feed; month,
    then state), as long as the files sent and not yet taken stay under the budget; each file
    the run takes lets the next ones be sent, into the next feed. A file the run asks for
    before it was sent is left to the run (not sent later), and a file gone before it was read
    is skipped."""
    from bdt_platform.inbox.folder import FolderInbox

    monkeypatch.setattr(workers, "MIN_CHUNK_FILES", 1)  # 3 files a feed: a chunk per file
    months = [dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)]
    feeds = ("eligibility", "mailreturns", "nudges", "outcomes")  # the run's order
    drops = {}
    for feed in feeds:
        for month in months:
            path = tmp_path / "inbox" / bf.partner(feed, "PA") / bf.filename(feed, "PA", month)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bf.good_file(feed, "PA", month))
            drops[feed, month] = path
    inbox = FolderInbox(root=str(tmp_path / "inbox"))

    def take(feed, month):
        path = drops[feed, month]
        return ahead.take(feed, path.name, path.read_bytes(), "PA", month, KEY)

    try:
        ahead = prefetch.start(inbox, KEY, processes=1, budget_bytes=10**9)
        assert _sent(ahead) == [drops[feed, month].name for feed in feeds for month in months]
        assert prefetch.active() is ahead

        ahead = prefetch.start(inbox, KEY, processes=1, budget_bytes=1)  # one file at a time
        assert prefetch.active() is ahead
        assert _sent(ahead) == [drops["eligibility", months[0]].name]
        assert take("eligibility", months[0]) is not None
        assert _sent(ahead) == [drops["eligibility", months[1]].name]
        assert take("eligibility", months[2]) is None  # not sent yet: the run reads it itself
        drops["mailreturns", months[0]].unlink()  # gone before it is read
        assert take("eligibility", months[1]) is not None
        assert _sent(ahead) == [drops["mailreturns", months[1]].name]  # the next feed's
        assert (ahead.sent, ahead.taken) == (3, 2)
    finally:
        prefetch.stop()
    assert prefetch.active() is None


def _generated_home(root: Path):
    settings = make_settings(root / "home")
    generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=["NJ", "PA"],
             months=[dt.date(2024, 1, 1), dt.date(2024, 2, 1)], scale=0.3, seed=11,
             pii_key=settings.pii_key)
    return settings


def _ingest(settings, change):
    defs = build_feed_definitions(settings)
    instance = instance_for(settings)
    inbox = defs.resources["inbox"]
    ahead = None
    try:
        if change == "after read-ahead":
            ahead = prefetch.start(inbox, settings.pii_key, processes=1)
            assert ahead.wait_for_the_run()  # every file read: the change below comes after
        broken = Path(settings.inbox) / "communitycare" / "communitycare_PA_202402_eligibility.csv"
        broken.write_bytes(b"not,the,header\n1,2,3\n")
        result = ingest(defs, instance, inbox, defs.resources["lake"],
                        defs.resources["warehouse"], None, settle_seconds=0, echo=lambda _: None)
    finally:
        prefetch.stop()
        instance.dispose()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        tables = {feed: con.execute(f"SELECT * FROM raw.{feed} ORDER BY ALL").fetchall()
                  for feed in ("eligibility", "outcomes", "mailreturns", "nudges")}
    return ahead, result, tables


def test_a_run_that_takes_files_read_ahead_lands_what_it_would_have_read(tmp_path):
    """Two homes with the same drops; in both, one file is replaced after the read-ahead
    (here: with a broken file). The run with a read-ahead takes every other file from it,
    reads the changed one afresh (and quarantines it), and lands the same rows."""
    read_ahead, with_ahead, tables_ahead = _ingest(_generated_home(tmp_path / "a"),
                                                   "after read-ahead")
    none, without, tables = _ingest(_generated_home(tmp_path / "b"), "no read-ahead")
    files = len(with_ahead.files)
    assert none is None and read_ahead is not None
    assert read_ahead.sent == files == 20  # 2 states x 2 months x 5 files (2 of eligibility)
    assert read_ahead.taken == files - 1  # all but the file changed after it was read
    assert [(f.path, f.status) for f in with_ahead.files] == [
        (f.path, f.status) for f in without.files]
    assert [f.path for f in with_ahead.files if f.status == "quarantined"] == [
        "communitycare/communitycare_PA_202402_eligibility.csv"]
    assert all(tables_ahead[feed] for feed in tables_ahead)
    assert tables_ahead == tables
