"""Small plain files read by Arrow's CSV reader, many at once (``plain_csv``).

Reading with Arrow must change nothing a user sees: every file of the corpus (the good files
and every broken rule of every feed) prepared as the loaders prepare it gives the same verdict,
the same rejection report and the same typed rows as when the csv module reads it; whatever
Arrow would read otherwise than the csv module is left to the csv module."""

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bdt_platform.feeds import csv_reader, parsing, plain_csv, rejections
from bdt_platform.feeds.specs import ALL_SPECS

from . import bad_files as bf

MONTH = dt.date(2024, 3, 1)
STATE = "PA"
COLUMNS = ["a", "b", "c"]


def _files():
    good = [(bf.filename(feed, STATE, MONTH, gz), bf.good_file(feed, STATE, MONTH, gz), feed)
            for feed in bf.FEEDS for gz in (False, True)]
    return good + [(case.filename(STATE, MONTH), case.data(STATE, MONTH), case.feed)
                   for case in bf.CASES]


def _by_csv_module(monkeypatch):
    monkeypatch.setattr(plain_csv, "PLAIN_MAX_BYTES", -1)


def _same(prepared: parsing.PreparedFiles, expected: parsing.PreparedFiles) -> None:
    assert [v is None for v in prepared.verdicts] == [v is None for v in expected.verdicts]
    for verdict, wanted in zip(prepared.verdicts, expected.verdicts):
        if wanted is not None:
            assert verdict.failures == wanted.failures
    assert prepared.rows == expected.rows
    assert (prepared.table is None) == (expected.table is None)
    if expected.table is not None:
        assert prepared.table.equals(expected.table)


@pytest.mark.parametrize("name,data,feed", _files(), ids=lambda v: v if isinstance(v, str)
                         and not v.endswith((".csv", ".gz")) else None)
def test_a_file_prepared_with_arrow_gives_what_the_csv_module_gives(monkeypatch, name, data,
                                                                    feed):
    with_arrow = parsing.prepare_files(feed, [(name, data, STATE, MONTH)], bf.TOKEN_KEY)
    _by_csv_module(monkeypatch)
    with_csv = parsing.prepare_files(feed, [(name, data, STATE, MONTH)], bf.TOKEN_KEY)
    _same(with_arrow, with_csv)


def _plain_rows(feed, month):
    """The corpus's good rows but those a CSV writer quotes (a comma, quote or line break)."""
    rows = [row for row in bf.good_rows(feed, STATE, month)
            if not any(set(str(value)) & set(',"\r\n') for value in row.values())]
    assert len(rows) > 2
    return rows


@pytest.mark.parametrize("feed", bf.FEEDS)
def test_a_chunk_of_good_plain_files_is_read_by_arrow_alone(monkeypatch, feed):
    """Good plain files (also gzip-compressed, with CRLF line ends, with the columns in
    another order) never reach the csv module, and give what it gives."""
    months = [dt.date(2024, m, 1) for m in (1, 2, 3, 4)]
    names = bf.columns(feed)

    def plain(month, gz=False, lineterminator="\n", order=names):
        data = bf.csv_text(_plain_rows(feed, month), order, lineterminator).encode()
        return (bf.filename(feed, STATE, month, gz), bf.gzip_bytes(data) if gz else data,
                STATE, month)

    chunk = [plain(months[0]), plain(months[1], gz=True),
             plain(months[2], lineterminator="\r\n"), plain(months[3], order=names[::-1])]
    _by_csv_module(monkeypatch)
    with_csv = parsing.prepare_files(feed, chunk, bf.TOKEN_KEY)
    monkeypatch.undo()

    def not_the_csv_module(*_args, **_kwargs):
        raise AssertionError("read by the csv module")

    monkeypatch.setattr(csv_reader, "column_batches", not_the_csv_module)
    with_arrow = parsing.prepare_files(feed, chunk, bf.TOKEN_KEY)
    assert with_arrow.verdicts == [None] * 4
    _same(with_arrow, with_csv)


def test_a_file_arrow_cannot_read_sends_its_group_to_the_csv_module(monkeypatch):
    """One file of a chunk with a row short of a field: Arrow's reading of the group fails, the
    csv module reads the group's files, and the chunk's verdicts and rows are as ever."""
    feed = "mailreturns"
    months = [dt.date(2024, m, 1) for m in (1, 2, 3)]
    lines = bf.csv_text(bf.good_rows(feed, STATE, months[1]), bf.columns(feed)).splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]
    chunk = [(bf.filename(feed, STATE, m), bf.good_file(feed, STATE, m), STATE, m)
             for m in months]
    chunk[1] = (chunk[1][0], ("\n".join(lines) + "\n").encode(), STATE, months[1])
    with_arrow = parsing.prepare_files(feed, chunk, bf.TOKEN_KEY)
    assert with_arrow.verdicts[1].rules == ["field_count_matches_header"]
    assert with_arrow.verdicts[1].failures[0].examples[0]["line"] == 3
    _by_csv_module(monkeypatch)
    _same(with_arrow, parsing.prepare_files(feed, chunk, bf.TOKEN_KEY))


def _read(*texts: bytes) -> dict:
    return plain_csv.read_plain(dict(enumerate(texts)), COLUMNS)


def _values(read, key) -> tuple[list[dict], list[int]]:
    table, lines = read[key]
    assert table.column_names == COLUMNS
    assert all(column.num_chunks == 1 for column in table.columns)
    return table.to_pylist(), list(lines)


def test_plain_files_are_read_as_the_csv_module_reads_them():
    read = _read(b"a,b,c\n1,2,3\n4,5,6",  # no line break at the end
                 b"a,b,c\r\nx, y ,\r\n",  # CRLF; spaces kept; an empty field is ""
                 b" c ,a,b\n3,1,\xc3\xa9\n",  # another order; names stripped; UTF-8
                 b"a,b,c\n",  # only a header
                 b"a,b,c")
    assert _values(read, 0) == ([{"a": "1", "b": "2", "c": "3"},
                                 {"a": "4", "b": "5", "c": "6"}], [2, 3])
    assert _values(read, 1) == ([{"a": "x", "b": " y ", "c": ""}], [2])
    assert _values(read, 2) == ([{"a": "1", "b": "é", "c": "3"}], [2])
    assert _values(read, 3) == ([], [])
    assert _values(read, 4) == ([], [])
    text = "a,b,c\n1,2,3\n4,5,6"
    columns, lines = csv_reader.read_text_columns(text, _spec())
    assert columns.to_pylist() == _values(read, 0)[0] and list(lines) == [2, 3]


def _spec():
    class Spec:  # what ``csv_reader.read_text_columns`` reads of a feed's spec
        input_columns = tuple(COLUMNS)
        name = "test"
    return Spec()


@pytest.mark.parametrize("text", [
    b'a,b,c\n"1",2,3\n',  # a quote: the csv module's rules for quotes decide
    b"a,b,c\n1,2,3\r4,5,6\n",  # a carriage return alone ends a record for the csv module
    b"a,b,c\n1,2,3\n\n4,5,6\n",  # a blank line: skipped by the csv module, a row to Arrow
    b"a,b,c\n1,2,3\n\n",  # ... at the end too
    b"a,b,c\r\n1,2,3\r\n\r\n",
    b"\na,b,c\n1,2,3\n",  # the header is not on the first line
    b"a,b\n1,2\n",  # a missing column
    b"a,b,c,d\n1,2,3,4\n",  # an unexpected one
    b"a,b,b\n1,2,3\n",  # a column named twice
    b"a,b,c\n1,2\n",  # a row short of a field
    b"a,b,c\n1,2,3,4\n",  # a row with one too many
    b"a,b,c\n1,2,3\n   \n",  # a line of spaces (the csv module skips it)
], ids=lambda text: repr(text)[:40])
def test_what_arrow_would_read_otherwise_is_left_to_the_csv_module(text):
    assert _read(text) == {}


def test_a_group_is_left_out_whole_when_one_of_its_files_cannot_be_read():
    read = _read(b"a,b,c\n1,2,3\n", b"a,b,c\n1,2\n", b"c,b,a\n1,2,3\n")
    assert list(read) == [2]  # the third file has a header of its own: another group
    assert _values(read, 2) == ([{"a": "3", "b": "2", "c": "1"}], [2])


def test_a_contract_of_one_column_is_left_to_the_csv_module():
    assert plain_csv.read_plain({0: b"a\n1\n"}, ["a"]) == {}


def test_every_feed_has_columns_enough_for_arrow():
    assert all(len(spec.input_columns) > 1 for spec in ALL_SPECS.values() if spec.input_columns)


def test_the_rows_read_are_arrow_strings():
    table, _ = _read(b"a,b,c\n1,2,3\n")[0]
    assert table.schema == pa.schema([(name, pa.string()) for name in COLUMNS])


_PIECES = st.sampled_from(["a", "é", " ", '"', '""', ",", "\r", "\n", "\r\n", ""])
_FIELD = st.lists(_PIECES, max_size=3).map("".join)
_ROW = st.lists(_FIELD, min_size=2, max_size=4).map(",".join)


@given(header=st.permutations(COLUMNS), rows=st.lists(_ROW, max_size=4),
       end=st.sampled_from(["", "\n", "\r\n"]))
@settings(max_examples=500, deadline=None, derandomize=True)
def test_arrow_reads_a_text_as_the_csv_module_does_or_leaves_it(header, rows, end):
    """Any text (quotes, commas, carriage returns, blank lines, short or long rows): what
    ``read_plain`` reads is exactly what the csv module reads (columns and lines); a text the
    csv module rejects, Arrow leaves out."""
    text = ",".join(header) + "\n" + "\n".join(rows) + end
    found = plain_csv.read_plain({0: text.encode()}, COLUMNS)
    try:
        columns, lines = csv_reader.read_text_columns(text, _spec())
    except rejections.FileRejected:
        assert found == {}
        return
    if found:
        table, plain_lines = found[0]
        assert table.to_pylist() == columns.to_pylist()
        assert list(plain_lines) == list(lines)


def test_a_big_plain_file_reads_in_batches_as_the_csv_module_reads_it():
    """``plain_batches`` (Arrow, a block at a time) gives the rows, columns and lines that
    ``csv_reader.column_batches`` gives; a line with a field too few is ``NotPlain``, not a
    rejection; a quoted file is not plain at all."""
    import pyarrow as pa
    import pytest

    from bdt_platform.feeds import csv_reader, plain_csv
    from bdt_platform.feeds.specs import ALL_SPECS

    spec = ALL_SPECS["mailreturns"]
    columns = list(reversed(spec.input_columns))  # any column order
    body = "".join(",".join(f"{c}-{n}" for c in columns) + "\r\n" for n in range(50_000))
    text = " , ".join(columns) + "\r\n" + body
    data = text.encode()
    batches = list(plain_csv.plain_batches(data, 0, spec.input_columns, 4096))
    assert len(batches) > 5  # read a block at a time
    expected = list(csv_reader.column_batches(text, spec))
    got_table = pa.concat_tables([t for t, _ in batches])
    want_table = pa.concat_tables([t for t, _ in expected])
    assert got_table.equals(want_table)
    assert [n for _, lines in batches for n in lines] == [n for _, lines in expected for n in lines]
    broken = data.replace(b"\r\n" + f"{columns[0]}-777,".encode(), b"\r\n", 1)
    with pytest.raises(plain_csv.NotPlain):
        list(plain_csv.plain_batches(broken, 0, spec.input_columns, 4096))
    assert plain_csv.plain_batches(data.replace(b"-9,", b'-"9",', 1), 0,
                                   spec.input_columns, 4096) is None
