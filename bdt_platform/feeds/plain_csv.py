"""Reading plain partner files with Arrow's CSV reader, many files in one call.

Most partner files are plain CSV: no quoted field, one record per line, no blank line. The csv
module reads them record by record into Python strings (``csv_reader.column_batches``), about
four times the CPU of Arrow's C++ reader over the same bytes; and Arrow's reader has a fixed
cost per call of about as much as a small file's reading, so a chunk's small files that share a
header line are read in one call, their bodies one after the other, and the table is cut back
into files by their line counts.

Only what reads exactly as ``csv_reader.column_batches`` reads it is read here: a file with a
quote, a carriage return that does not end a line, an empty line, or a header that is not
exactly the contract's columns (in any order) is left out, and so is a whole group in which
Arrow finds a row with another number of fields than its header (a line of spaces is one) or
another number of rows than lines. The caller reads what is left out the usual way, with the usual
rejection reports: this module never rejects a file.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv

#: Files of at most this many bytes (as delivered) are decoded first and read here if they
#: are plain, decoded in one piece (``decoding.TEXT_PIECE``) and of at most
#: ``slices.SLICE_ROWS`` lines; the others the usual way (a slice at a time when big).
PLAIN_MAX_BYTES = 1 << 20


def read_plain(texts: Mapping[Hashable, bytes], columns: Sequence[str]
               ) -> dict[Hashable, tuple[pa.Table, range]]:
    """Of ``texts`` (each file's decoded text as UTF-8 bytes, without a byte order mark), the
    plain ones: per file, its rows as a table of the contract's ``columns`` (Arrow strings, in
    that order, one chunk each) and the line each row is on (the header is line 1)."""
    groups: dict[bytes, list[tuple[Hashable, bytes]]] = {}
    if len(columns) < 2:  # a blank line would then be a row of one empty field to Arrow
        return {}
    for key, text in texts.items():
        if not _is_plain(text):
            continue
        end = text.find(b"\n")
        header, body = (text, b"") if end < 0 else (text[:end + 1], text[end + 1:])
        if body and not body.endswith(b"\n"):
            body += b"\n"
        groups.setdefault(header, []).append((key, body))
    read: dict[Hashable, tuple[pa.Table, range]] = {}
    for header, files in groups.items():
        positions = _positions(header, columns)
        if positions is None:
            continue
        table = _read_bodies(b"".join(body for _, body in files), positions, columns)
        counts = [body.count(b"\n") for _, body in files]
        if table is None or table.num_rows != sum(counts):
            continue
        offset = 0
        for (key, _), count in zip(files, counts):
            read[key] = (table.slice(offset, count), range(2, count + 2))
            offset += count
    return read


def _positions(header: bytes, columns: Sequence[str]) -> list[int] | None:
    """Where each of ``columns`` is in the header line; None unless its names (stripped, as
    ``csv_reader`` strips them) are exactly ``columns`` in some order."""
    names = [name.strip() for name in header.decode("utf-8").rstrip("\r\n").split(",")]
    if len(names) != len(columns) or set(names) != set(columns):
        return None
    return [names.index(column) for column in columns]


def _read_bodies(bodies: bytes, positions: list[int], columns: Sequence[str]
                 ) -> pa.Table | None:
    """The files' rows (their lines without headers, one after the other) as strings, the
    field at ``positions[i]`` as ``columns[i]``; None when a line does not have every field."""
    if not bodies:
        return pa.table([pa.array([], pa.string()) for _ in columns], names=list(columns))
    names = [f"f{number}" for number in range(len(positions))]
    try:
        table = pacsv.read_csv(pa.py_buffer(bodies), **_options(names, positions))
    except pa.ArrowInvalid:
        return None
    return table.rename_columns(list(columns)).combine_chunks()


class NotPlain(Exception):
    """Arrow's reader met a line ``csv_reader`` would read otherwise (another number of fields,
    or rows and lines that do not match) after ``plain_batches`` began: read the file again the
    usual way. Never a rejection."""


#: Bytes of a big plain file Arrow reads per batch at most; its batches then hold about
#: ``csv_reader.READ_BATCH_ROWS`` rows, as the csv module's do.
MAX_BLOCK_BYTES = 16 << 20


def _is_plain(data: bytes) -> bool:
    """No quote, no carriage return but in CRLF, no blank line: one record per line, read the
    same by Arrow and by the csv module."""
    return not (b'"' in data or data.count(b"\r") != data.count(b"\r\n")
                or b"\n\n" in data or b"\n\r\n" in data)


def plain_batches(data: bytes, start: int, columns: Sequence[str], batch_rows: int
                  ) -> Iterator[tuple[pa.Table, range]] | None:
    """A big plain file (its checked UTF-8 bytes from ``start``, after any byte order mark) as
    ``csv_reader.column_batches`` would give it - tables of the contract's ``columns`` (Arrow
    strings, in that order) of about ``batch_rows`` rows, with the line each row is on - but
    read by Arrow's C++ reader a block at a time (about four times less CPU than the csv
    module). None when the file is not plain or its header is not exactly the contract's
    columns: nothing was read, read it the usual way. The iterator raises :class:`NotPlain`
    when Arrow finds a line of another number of fields, or at the end when its rows are not
    the file's lines."""
    if len(columns) < 2 or not _is_plain(data):
        return None
    end = data.find(b"\n", start)
    header = data[start:] if end < 0 else data[start:end + 1]
    positions = _positions(header, columns)
    if positions is None:
        return None
    body_start = len(data) if end < 0 else end + 1
    lines = data.count(b"\n", body_start) + (0 if data.endswith(b"\n") or body_start ==
                                             len(data) else 1)
    return _plain_batches(memoryview(data)[body_start:], lines, positions, columns,
                          batch_rows)


def _plain_batches(body: memoryview, lines: int, positions: list[int], columns: Sequence[str],
                   batch_rows: int) -> Iterator[tuple[pa.Table, range]]:
    if not lines:
        empty = [pa.array([], pa.string()) for _ in columns]
        yield pa.table(empty, names=list(columns)), range(2, 2)
        return
    names = [f"f{number}" for number in range(len(positions))]
    per_line = max(1, len(body) // lines)
    block = min(MAX_BLOCK_BYTES, max(1 << 16, per_line * batch_rows))
    try:
        reader = _open(body, names, positions, block)
    except pa.ArrowInvalid as error:  # the first block is read at once
        raise NotPlain(str(error)) from None
    line = 2  # the header is line 1
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowInvalid as error:
            raise NotPlain(str(error)) from None
        table = pa.Table.from_batches([batch]).rename_columns(list(columns))
        yield table, range(line, line + table.num_rows)
        line += table.num_rows
    if line - 2 != lines:
        raise NotPlain(f"{line - 2} rows read from {lines} lines")


def _open(body: memoryview, names: list[str], positions: list[int], block: int):
    return pacsv.open_csv(pa.py_buffer(body), **_options(names, positions, block))


def _options(names: list[str], positions: list[int], block: int | None = None) -> dict:
    """Arrow's reader set to read a plain file as the csv module does: no quoting, every line
    a row, every field text (never null), the contract's columns only."""
    read = pacsv.ReadOptions(column_names=names, use_threads=False,
                             **({"block_size": block} if block else {}))
    return {"read_options": read,
            "parse_options": pacsv.ParseOptions(quote_char=False, double_quote=False,
                                                escape_char=False, newlines_in_values=False,
                                                ignore_empty_lines=False),
            "convert_options": pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                include_columns=[names[position] for position in positions],
                strings_can_be_null=False, quoted_strings_can_be_null=False,
                check_utf8=False)}  # ``decoding.decoded`` checked it
