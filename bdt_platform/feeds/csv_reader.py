"""Checked CSV text -> the contract's columns as Arrow strings, and the line each row starts on.

The csv module reads the text (``strict``: malformed CSV is rejected naming the line its record
starts on), ``READ_BATCH_ROWS`` records at a time, each batch becoming one Arrow string array
per column: a big file is never all Python objects at once. Small plain files are read by
Arrow's reader instead (``plain_csv``), exactly as they would be read here. The header is
checked here (``header_row_present``, ``required_columns_present``, ``no_unexpected_columns``,
``unique_column_names``), and every row's number of fields (``field_count_matches_header``).

What is tolerated, because a partner would expect it: CRLF or CR line endings, blank lines
(anywhere, including trailing ones; a line holding only spaces counts as blank), header names
padded with spaces, columns in any order. Values are never trimmed or changed. A header-only
file is a valid file with zero rows.
"""

from __future__ import annotations

import array
import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa

from bdt_platform.feeds import decoding  # (its TEXT_PIECE read where used: tests change it)
from bdt_platform.feeds.decoding import Utf8Text, line_cuts
from bdt_platform.feeds.rejections import (MAX_EXAMPLES, ContractFailure, FileRejected,
                                           mask_value, masked_names, reject)
from bdt_platform.feeds.specs import FeedSpec

LINE_NUMBERS = "line_numbers"  # frame.attrs key: the file line each row starts on
# A file's records become Arrow columns this many at a time: a big file is never all Python
# objects at once (a record of ten fields as Python strings takes ~10x its bytes).
READ_BATCH_ROWS = 16_384


class LineNumbers:
    """The file line each row of a frame starts on (kept in ``frame.attrs``).

    Immutable and never deep-copied: pandas copies ``attrs`` on every operation, and copying a
    list of a million line numbers each time would cost more than the validation itself."""

    __slots__ = ("_lines",)

    def __init__(self, lines: Sequence[int]):
        self._lines = lines if isinstance(lines, array.array) else array.array("q", lines)

    def __deepcopy__(self, memo) -> LineNumbers:
        return self

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> int:
        return self._lines[index]


def _is_blank(record: list[str]) -> bool:
    return not record or (len(record) == 1 and not record[0].strip())


def _records(lines: Iterable[str], first_line: int = 1) -> Iterator[tuple[int, list[str]]]:
    """CSV records of ``lines`` (the text from file line ``first_line`` on) with the file line
    each starts on; blank lines skipped."""
    reader = csv.reader(lines, strict=True)
    while True:
        start = first_line + reader.line_num
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise reject("csv_well_formed",
                         f"CSV is malformed in the record starting at line {start}: {exc} "
                         "(an unclosed quote, or text after a closing quote?)",
                         examples=[{"line": start}]) from None
        if not _is_blank(record):
            yield start, record


def _text_lines(text: str | Utf8Text, first_line: int = 1) -> Iterator[str]:
    """The lines of ``text`` from line ``first_line`` on, as the csv module reads a file (split
    at ``\n``, ``\r\n`` or ``\r``, each kept). A ``StringIO`` holds its text four bytes per
    character, so the text is read about ``decoding.TEXT_PIECE`` characters (or bytes, of a
    ``Utf8Text``) at a time, each piece ending at a ``\n``; a quoted field may still run from
    one piece into the next."""
    skip = first_line - 1
    for text_piece in _pieces(text):
        piece = io.StringIO(text_piece, newline="")
        text_piece = None
        if skip:
            skipped = sum(1 for _ in itertools.islice(piece, skip))
            skip -= skipped
            if skip:
                continue
        yield from piece


def _pieces(text: str | Utf8Text) -> Iterator[str]:
    if isinstance(text, Utf8Text):
        yield from text.pieces(decoding.TEXT_PIECE)
        return
    for start, end in line_cuts(text, "\n", decoding.TEXT_PIECE):
        yield text[start:end]


def _record_batches(text: str | Utf8Text) -> Iterator[tuple[list[list[str]], Sequence[int]]]:
    """``_records`` in batches of at most ``READ_BATCH_ROWS`` records, each as two lists
    (records, the line each starts on), so that a big file is never all Python objects at once.

    A batch is read at once when each of its records is one line of its own (the csv module
    then counts as many lines as records: record ``i`` is on line ``i + 1``): ~35% less time
    than record by record. From the first batch where that fails (a quoted field holding a line
    break, or malformed CSV) the rest is read record by record, which also says where the CSV
    is malformed."""
    reader = csv.reader(_text_lines(text), strict=True)
    read = 0  # records read at once so far, each one line: also the lines read
    while True:
        try:
            rows = list(itertools.islice(reader, READ_BATCH_ROWS))
        except csv.Error:
            break
        if reader.line_num != read + len(rows):
            break
        if not rows:
            return
        first, read = read + 1, read + len(rows)
        if min(map(len, rows)) > 1:  # no record is blank (blank: no field, or one blank)
            yield rows, range(first, first + len(rows))
        else:
            kept = [(line, row) for line, row in enumerate(rows, start=first)
                    if not _is_blank(row)]
            yield [row for _, row in kept], [line for line, _ in kept]
    records = _records(_text_lines(text, read + 1), read + 1)
    while batch := list(itertools.islice(records, READ_BATCH_ROWS)):
        yield [record for _, record in batch], [line for line, _ in batch]


def read_text_frame(text: str, spec: FeedSpec) -> pd.DataFrame:
    """CSV text -> a DataFrame of strings with exactly the contract's columns (in contract
    order). ``frame.attrs["line_numbers"]`` holds the file line each row starts on.

    Each column is Arrow-backed text (``pd.ArrowDtype(pa.string())``): the contract's rules
    read it as an Arrow array without converting (``text_values.as_text``), pandera's null check
    is a count, and the typed table takes the arrays as they are, instead of converting Python
    ``str`` objects to Arrow once per rule and again for the table."""
    return text_frame(*read_text_columns(text, spec))


def text_frame(columns: pa.Table, line_numbers: list[int] | None = None) -> pd.DataFrame:
    """A table of text columns as the DataFrame the contract validates (Arrow-backed text, the
    same buffers); with ``line_numbers``, those of its rows (``frame.attrs``)."""
    frame = pd.DataFrame({name: pd.arrays.ArrowExtensionArray(columns.column(name))
                          for name in columns.column_names})
    if line_numbers is not None:
        frame.attrs[LINE_NUMBERS] = LineNumbers(line_numbers)
    return frame


def read_text_columns(text: str | Utf8Text, spec: FeedSpec
                      ) -> tuple[pa.Table, Sequence[int]]:
    """CSV text -> ``read_text_frame``'s columns as an Arrow table of strings, and the line each
    row starts on. A chunk's files are read this way and validated as one frame
    (``parsing.prepare_files``): one DataFrame per chunk instead of one per file and two
    concatenations, a third of a worker's time."""
    return joined_batches(list(column_batches(text, spec)))


def column_batches(text: str | Utf8Text, spec: FeedSpec
                   ) -> Iterator[tuple[pa.Table, Sequence[int]]]:
    """CSV text -> its records ``READ_BATCH_ROWS`` at a time, each batch as a table of the
    contract's columns (Arrow strings, in contract order) and the line each row starts on.

    The header is checked before the first batch; a row without the header's number of fields
    ends the batches (the rest is only counted) and, once the text is read, rejects the file
    (``field_count_matches_header``, naming every such row). A batch may hold no rows."""
    batches = _record_batches(text)
    for rows, lines in batches:
        if rows:
            break
    else:
        raise reject("file_not_empty", "file holds no header row")
    header, rows, lines = [name.strip() for name in rows[0]], rows[1:], lines[1:]
    expected = spec.input_columns
    if not set(header) & set(expected):
        raise reject("header_row_present",
                     f"the first row names none of the {len(expected)} columns of the "
                     f"{spec.name} contract: is the header row missing, or is this another feed's "
                     "file? Expected: "
                     f"{', '.join(expected)}")
    missing = [c for c in expected if c not in header]
    unexpected = [c for c in header if c not in expected]
    duplicated = sorted({c for c in header if header.count(c) > 1 and c in expected})
    failures = []
    if missing:
        failures.append(ContractFailure(
            "required_columns_present", ",".join(missing), len(missing),
            f"missing column(s): {', '.join(missing)}"))
    if unexpected:
        failures.append(ContractFailure(
            "no_unexpected_columns", ",".join(str(mask_value(c)) for c in unexpected),
            len(unexpected), f"unexpected column(s): {masked_names(unexpected)}"))
    if duplicated:
        failures.append(ContractFailure(
            "unique_column_names", ",".join(duplicated), len(duplicated),
            f"column(s) named more than once: {', '.join(duplicated)}"))
    if failures:
        raise FileRejected(failures)
    # Each batch's records transposed into columns, each then one Arrow string array.
    position = {name: number for number, name in enumerate(header)}
    empty = pa.array([], type=pa.string())
    bad: list[tuple[int, int]] = []
    while True:
        if rows and set(map(len, rows)) != {len(header)}:
            bad.extend((line, len(row)) for line, row in zip(lines, rows)
                       if len(row) != len(header))
        if not bad:  # once a row is bad the file is rejected: only count the others
            values = list(zip(*rows)) if rows else None
            arrays = [pa.array(values[position[name]], type=pa.string()) if values else empty
                      for name in expected]
            values = None
            yield pa.table(arrays, names=list(expected)), lines
        rows = lines = None
        batch = next(batches, None)
        if batch is None:
            break
        rows, lines = batch
        del batch
    if bad:
        raise reject("field_count_matches_header",
                     f"{len(bad)} row(s) do not have the header's {len(header)} fields "
                     f"(first at line {bad[0][0]}); an unquoted comma, or a lost field?",
                     count=len(bad),
                     examples=[{"line": line, "fields": count, "expected": len(header)}
                               for line, count in bad[:MAX_EXAMPLES]])


def joined_batches(batches: list[tuple[pa.Table, Sequence[int]]]
                   ) -> tuple[pa.Table, Sequence[int]]:
    """``column_batches``' batches (one or more) as one: a table whose columns are one array
    each, and the line each of its rows starts on."""
    if len(batches) == 1:
        return batches[0]
    return (pa.concat_tables([table for table, _ in batches]).combine_chunks(),
            array.array("q", itertools.chain.from_iterable(lines for _, lines in batches)))
