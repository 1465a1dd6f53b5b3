"""Big partner files: validated, tokenized and typed a slice at a time, their typed rows spilled
to local disk and inserted from there (``slices.prepare_in_slices``, ``staged_rows``).

Slicing must change nothing a user sees: every file of the corpus (every broken rule of every
feed, and the good files) is prepared with slices of two records and compared with the same
file read whole: the same verdict, the same rejection report, the same typed rows."""

import datetime as dt
import os

import duckdb
import pyarrow as pa
import pytest

from bdt_platform.feeds import (csv_reader, decoding, parsing, plain_csv, prefetch, slices,
                                workers)
from bdt_platform.storage.staged_rows import SpillWriter, StagedRows

from . import bad_files as bf

MONTH = dt.date(2024, 3, 1)
STATE = "PA"


def _files():
    good = [(bf.filename(feed, STATE, MONTH), bf.good_file(feed, STATE, MONTH), feed)
            for feed in bf.FEEDS]
    return good + [(case.filename(STATE, MONTH), case.data(STATE, MONTH), case.feed)
                   for case in bf.CASES]


def _sliced(monkeypatch, rows=2):
    """Slices (and read batches) of ``rows`` records; the text read 7 bytes at a time; no file
    read by Arrow (``plain_csv``: small files, not sliced)."""
    _not_plain(monkeypatch)
    monkeypatch.setattr(slices, "SLICE_ROWS", rows)
    monkeypatch.setattr(csv_reader, "READ_BATCH_ROWS", rows)
    monkeypatch.setattr(decoding, "TEXT_PIECE", 7)


def _not_plain(monkeypatch):
    monkeypatch.setattr(plain_csv, "PLAIN_MAX_BYTES", -1)


@pytest.mark.parametrize("name,data,feed", _files(), ids=lambda v: v if isinstance(v, str)
                         and not v.endswith((".csv", ".gz")) else None)
def test_a_file_read_a_slice_at_a_time_gives_what_reading_it_whole_gives(
        monkeypatch, tmp_path, name, data, feed):
    whole = parsing.prepare_files(feed, [(name, data, STATE, MONTH)], bf.TOKEN_KEY)
    assert not whole.spilled
    _sliced(monkeypatch)
    sliced = parsing.prepare_files(feed, [(name, data, STATE, MONTH)], bf.TOKEN_KEY,
                                   str(tmp_path))
    if whole.verdicts[0] is not None:
        assert sliced.verdicts[0] is not None, name
        assert sliced.verdicts[0].failures == whole.verdicts[0].failures, name
        assert sliced.staged() is None and not sliced.spilled
        assert os.listdir(tmp_path) == []  # an abandoned spill is deleted
        return
    assert sliced.verdicts == [None] and sliced.rows == whole.rows
    assert whole.rows[0] > 2 and list(sliced.spilled) == [0], "the good file was not sliced"
    assert len(os.listdir(tmp_path)) == 1
    staged = sliced.staged()
    assert staged.read_all().equals(whole.table)
    staged.discard()
    assert os.listdir(tmp_path) == []


def test_ids_repeated_in_different_slices_reject_the_file_as_a_whole_read_does(monkeypatch,
                                                                                tmp_path):
    """Each slice is validated alone, so a record id repeated in two slices passes both: the
    ids are also compared across slices, and the file is then read whole for its report."""
    rows = bf.good_rows("eligibility", STATE, MONTH)
    rows[-1] = {**rows[-1], "record_id": rows[0]["record_id"]}
    data = bf.csv_text(rows, bf.columns("eligibility")).encode()
    name = bf.filename("eligibility", STATE, MONTH)
    _sliced(monkeypatch)
    sliced = parsing.prepare_files("eligibility", [(name, data, STATE, MONTH)], bf.TOKEN_KEY,
                                   str(tmp_path))
    monkeypatch.setattr(slices, "SLICE_ROWS", 10**9)
    whole = parsing.prepare_files("eligibility", [(name, data, STATE, MONTH)], bf.TOKEN_KEY)
    assert whole.verdicts[0].rules == ["record_id_unique"]
    assert sliced.verdicts[0].failures == whole.verdicts[0].failures
    assert [example["line"] for example in sliced.verdicts[0].failures[0].examples] == [
        example["line"] for example in whole.verdicts[0].failures[0].examples]
    assert os.listdir(tmp_path) == []


def test_a_row_with_too_few_fields_after_the_spilled_slices_rejects_the_file(monkeypatch,
                                                                              tmp_path):
    lines = bf.csv_text(bf.good_rows("mailreturns", STATE, MONTH),
                        bf.columns("mailreturns")).splitlines()
    lines[-1] = lines[-1].rsplit(",", 1)[0]
    data = ("\n".join(lines) + "\n").encode()
    _sliced(monkeypatch)
    prepared = parsing.prepare_files(
        "mailreturns", [(bf.filename("mailreturns", STATE, MONTH), data, STATE, MONTH)],
        bf.TOKEN_KEY, str(tmp_path))
    assert prepared.verdicts[0].rules == ["field_count_matches_header"]
    assert prepared.verdicts[0].failures[0].examples[0]["line"] == len(lines)
    assert os.listdir(tmp_path) == []


def test_a_chunk_of_small_and_big_files_stages_every_file_in_order(monkeypatch, tmp_path):
    """Small files are validated together and typed as one table; a big one among them is
    spilled: the staged rows hold all of them, in the chunk's order. All are plain files: the
    small ones are read by Arrow (``plain_csv``); the big one, though of few bytes, has more
    than ``SLICE_ROWS`` lines, so it is read a slice at a time."""
    def plain_file(state, month, times=1):
        rows = [row for row in bf.good_rows("outcomes", STATE, month)
                if not any(set(str(value)) & set(',"\r\n') for value in row.values())]
        data = bf.csv_text(rows * times, bf.columns("outcomes")).encode()
        return bf.filename("outcomes", state, month), data, state, month

    months = [dt.date(2024, m, 1) for m in (1, 2, 3)]
    small = [plain_file(STATE, m) for m in months]
    big = plain_file("NJ", MONTH, times=4)  # outcomes may repeat an id
    columns = bf.columns("outcomes")
    assert all(plain_csv.read_plain({0: data}, columns) for _, data, _, _ in [*small, big])
    chunk = [small[0], big, small[1], small[2]]
    whole = parsing.prepare_files("outcomes", chunk, bf.TOKEN_KEY)
    monkeypatch.setattr(slices, "SLICE_ROWS", 10)
    mixed = parsing.prepare_files("outcomes", chunk, bf.TOKEN_KEY, str(tmp_path))
    count = whole.rows[0]
    assert whole.rows == [count, 4 * count, count, count] and 4 * count > 10 >= count
    assert list(mixed.spilled) == [1] and mixed.rows == whole.rows
    staged = mixed.staged()
    assert [type(part) for part in staged.parts] == [pa.Table, type(mixed.spilled[1]),
                                                     pa.Table]
    assert staged.read_all().equals(whole.table)
    for position in range(len(chunk)):
        _, rows_of_file, count = mixed.file(position)
        table = rows_of_file if isinstance(rows_of_file, pa.Table) else StagedRows(
            [rows_of_file]).read_all()
        assert table.equals(whole.file(position)[1]) and count == whole.rows[position]
    staged.discard()
    assert os.listdir(tmp_path) == []


def test_files_read_ahead_keep_their_spilled_rows_until_the_run_takes_them(monkeypatch,
                                                                             read_ahead):
    """A big file read ahead of the run (``prefetch``) waits spilled in the read-ahead's own
    folder; the run's chunk gathers it with the others, and ``close`` removes the folder."""
    _sliced(monkeypatch)
    files = [(bf.filename(feed, STATE, MONTH), bf.good_file(feed, STATE, MONTH), STATE, MONTH)
             for feed in ("outcomes",)]
    ahead = read_ahead()
    ahead.send("outcomes", files, bf.TOKEN_KEY)
    assert len(os.listdir(ahead.spill_dir)) == 1
    gathered = prefetch.Gathered([ahead.take("outcomes", *files[0], bf.TOKEN_KEY)]).result()
    monkeypatch.setattr(slices, "SLICE_ROWS", 10**9)
    direct = parsing.prepare_files("outcomes", files, bf.TOKEN_KEY)
    assert list(gathered.spilled) == [0]
    assert gathered.staged().read_all().equals(direct.table)
    folder = ahead.spill_dir
    ahead.close()
    assert not os.path.exists(folder)


def _spilled(tmp_path, table: pa.Table):
    writer = SpillWriter(table.schema, str(tmp_path))
    for start in range(0, table.num_rows, 2):
        writer.write(table.slice(start, 2))
    return writer.finish()


def test_the_warehouse_inserts_spilled_rows_from_disk_and_deletes_their_file(tmp_path):
    from bdt_platform.storage.warehouse import DuckDBWarehouse

    prepared = parsing.prepare_files(
        "outcomes", [(bf.filename("outcomes", STATE, m), bf.good_file("outcomes", STATE, m),
                      STATE, m) for m in (dt.date(2024, 1, 1), dt.date(2024, 2, 1))],
        bf.TOKEN_KEY)
    first, second = prepared.table.slice(0, 6), prepared.table.slice(6)
    (tmp_path / "spill").mkdir()
    spilled = _spilled(tmp_path / "spill", second)
    assert spilled.num_rows == 6 and os.path.exists(spilled.path)
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.batch() as batch:
        batch.replace("raw.outcomes", StagedRows([first, spilled]),
                      [(STATE, dt.date(2024, 1, 1)), (STATE, dt.date(2024, 2, 1))])
    assert not os.path.exists(spilled.path)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        loaded = con.sql("SELECT * FROM raw.outcomes").to_arrow_table()
    assert loaded.num_rows == 12
    assert loaded.sort_by([("month", "ascending")]).select(
        prepared.table.column_names).to_pylist() == prepared.table.to_pylist()


def test_a_failed_insert_of_spilled_rows_deletes_their_file_and_commits_nothing(tmp_path):
    from bdt_platform.storage.warehouse import DuckDBWarehouse

    prepared = parsing.prepare_files(
        "outcomes", [(bf.filename("outcomes", STATE, MONTH), bf.good_file("outcomes", STATE,
                                                                          MONTH), STATE, MONTH)],
        bf.TOKEN_KEY)
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    with warehouse.batch() as batch:
        batch.replace("raw.outcomes", prepared.table, [(STATE, MONTH)])
    # The same table's rows with a column the warehouse table does not have.
    other = prepared.table.append_column("surprise", pa.array([1] * prepared.table.num_rows))
    (tmp_path / "spill").mkdir()
    spilled = _spilled(tmp_path / "spill", other)
    with pytest.raises(duckdb.Error):
        with warehouse.batch() as batch:
            batch.replace("raw.outcomes", StagedRows([spilled]), [(STATE, MONTH)])
    assert not os.path.exists(spilled.path)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.outcomes").fetchone()[0] == 6


def test_a_big_file_read_in_a_worker_is_loaded_from_its_spill(tmp_path):
    """A file of more than ``SLICE_ROWS`` records, read by a worker process, reaches the
    warehouse whole through the feed loader; its spill is gone once the batch commits."""
    import dagster as dg

    from bdt_platform.feeds import file_assets
    from bdt_platform.feeds.provenance import FeedLoadReport
    from bdt_platform.feeds.specs import ALL_SPECS
    from bdt_platform.storage.lake import LakeResource
    from bdt_platform.storage.warehouse import DuckDBWarehouse

    rows = bf.good_rows("outcomes", STATE, MONTH)
    rows = rows * (slices.SLICE_ROWS // len(rows) + 2)
    data = bf.csv_text(rows, bf.columns("outcomes")).encode()
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))

    with dg.build_asset_context() as context, workers.chunk_runner(1) as runner, \
            warehouse.batch() as batch:
        loader = file_assets._ChunkLoader(
            context, ALL_SPECS["outcomes"], dg.AssetKey(["raw", "outcomes"]),
            LakeResource(root=str(tmp_path / "lake")), FeedLoadReport("outcomes"),
            bf.TOKEN_KEY, runner, spill_dir=str(spill_dir))
        loader.add(file_assets._Incoming(
            f"{MONTH:%Y-%m-%d}|{STATE}", STATE, MONTH, bf.filename("outcomes", STATE, MONTH),
            data, dt.datetime.now(dt.timezone.utc)))
        loader._submit()
        [(_, future)] = loader.in_flight
        prepared = future.result()
        assert prepared.process != os.getpid() and list(prepared.spilled) == [0]
        assert len(os.listdir(spill_dir)) == 1
        loader.land_all(batch)
    assert os.listdir(spill_dir) == []
    assert warehouse.query("SELECT count(*) AS n FROM raw.outcomes")["n"].iloc[0] == len(rows)
