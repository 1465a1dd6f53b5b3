"""A chunk of partner files, from their bytes to a verdict per file and one typed table: what a
worker process runs (``prepare_files``, sent to ``workers``).

Each file goes through these steps, each in a module of its own; a step that finds a problem
raises ``rejections.FileRejected`` listing every failed rule with its column, count and up to
20 example rows (the file is then quarantined, nothing of it loaded):

1. ``decoding``: bytes -> checked text (gzip, UTF-8, a BOM stripped, no binary data);
2. ``csv_reader`` (small plain files: ``plain_csv``, Arrow's reader, many files at once): text
   -> the contract's columns as Arrow strings, and the line each row starts on;
3. ``validation``: the feed's pandera contract (``contracts``, written with ``contract_rules``),
   one call for the chunk's files;
4. ``typed_table``: -> the typed raw table, ``person_token`` instead of ``ssn``, and the
   partition columns.

A file of more than ``slices.SLICE_ROWS`` records goes through 2-4 a slice at a time
(``slices``), its typed rows spilled to local disk.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

# (``csv_reader.column_batches`` and ``slices.SLICE_ROWS`` are looked up where used: tests
# replace them.)
from bdt_platform.feeds import csv_reader, plain_csv, slices
from bdt_platform.feeds.csv_reader import joined_batches, read_text_columns, text_frame
from bdt_platform.feeds.decoding import Utf8Text, decoded
from bdt_platform.feeds.rejections import FileRejected
from bdt_platform.feeds.slices import prepare_in_slices
from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.feeds.typed_table import to_table_combined
from bdt_platform.feeds.validation import rejection, validate_combined
from bdt_platform.storage.staged_rows import SpilledRows, StagedRows


@dataclass
class PreparedFiles:
    """A chunk of files as ``prepare_files`` leaves them: per file (in order) None when it met
    the contract or its rejection; the accepted files' rows as one typed table (in order),
    except a big file's, which are spilled to local disk (``spilled``, by the file's position);
    each accepted file's row count; the seconds it took, and the process that did it."""

    verdicts: list[FileRejected | None]
    table: pa.Table | None
    rows: list[int]
    seconds: float
    process: int
    spilled: dict[int, SpilledRows] = field(default_factory=dict)

    def file(self, position: int) -> tuple[FileRejected | None, pa.Table | SpilledRows | None,
                                            int]:
        """The ``position``-th file's share: its rejection, or None, its rows (a zero-copy
        slice of ``table``, or its spilled rows) and their count."""
        if self.verdicts[position] is not None:
            return self.verdicts[position], None, 0
        if position in self.spilled:
            return None, self.spilled[position], self.spilled[position].num_rows
        offset, rows = self._in_table[position]
        return None, self.table.slice(offset, rows), rows

    @property
    def accepted(self) -> list[int]:
        """The accepted files' positions, in order."""
        return [number for number, verdict in enumerate(self.verdicts) if verdict is None]

    @functools.cached_property
    def _in_table(self) -> dict[int, tuple[int, int]]:
        """Per accepted file whose rows are in ``table`` (by position): where they start in
        it, and how many they are."""
        places, offset = {}, 0
        for position, rows in zip(self.accepted, self.rows):
            if position not in self.spilled:
                places[position] = (offset, rows)
                offset += rows
        return places

    def staged(self) -> StagedRows | None:
        """Every accepted file's rows, in file order, for the warehouse (None: no file was
        accepted): runs of files in ``table`` as one slice each, and the spilled files."""
        parts: list[pa.Table | SpilledRows] = []
        run: tuple[int, int] | None = None  # (offset, rows) of table rows not in ``parts`` yet
        for position in self.accepted:
            if position in self.spilled:
                if run is not None:
                    parts.append(self.table.slice(*run))
                    run = None
                parts.append(self.spilled[position])
                continue
            offset, rows = self._in_table[position]
            run = (offset, rows) if run is None else (run[0], run[1] + rows)
        if run is not None:
            parts.append(self.table.slice(*run))
        return StagedRows(parts) if parts else None


def prepare_files(feed: str, files: list[tuple[str, bytes, str, dt.date]], pii_key: str,
                  spill_dir: str | None = None) -> PreparedFiles:
    """Decode, read, validate (one pandera call, ``validation.validate_many``) and tokenize a
    chunk of ``(file name, bytes, state, month)`` of one feed. Pure and picklable both ways, so
    the feed loaders can run it in worker processes; it touches neither the lake nor the
    warehouse (a big file's rows go to a temporary file in ``spill_dir``, ``staged_rows``).

    Small plain files are read by Arrow, many in one call (``plain_csv``), the others by the
    csv module (``csv_reader.column_batches``). The files' text columns are joined (Arrow) into
    one frame, validated and typed at once; a file the combined validation implicates is
    validated again on its own frame. A file of more than ``slices.SLICE_ROWS`` records is read,
    validated and typed a slice at a time instead (``slices.prepare_in_slices``)."""
    started = time.perf_counter()
    spec = ALL_SPECS[feed]
    verdicts: list[FileRejected | None] = [None] * len(files)
    read: list[tuple[int, pa.Table, Sequence[int], str, dt.date, str]] = []
    spilled: dict[int, SpilledRows] = {}
    # Small plain files are read by Arrow, many at once (``plain_csv``); the rest as before.
    texts: dict[int, str | Utf8Text] = {}
    for position, (filename, data, _, _) in enumerate(files):
        if len(data) <= plain_csv.PLAIN_MAX_BYTES:
            try:
                texts[position] = decoded(data, filename)
            except FileRejected as rejected:
                verdicts[position] = rejected
    # (A file decoded in pieces, or of more than ``slices.SLICE_ROWS`` lines, is left to the csv
    # module: a file of more than ``slices.SLICE_ROWS`` records is read a slice at a time.)
    tried = {position for position, text in texts.items()
             if isinstance(text, str) and text.count("\n") <= slices.SLICE_ROWS}
    plain = plain_csv.read_plain({position: texts[position].encode("utf-8")
                                  for position in tried}, spec.input_columns)
    try:
        for position, (filename, data, state, month) in enumerate(files):
            if verdicts[position] is not None:
                continue
            if position in plain:
                read.append((position, *plain.pop(position), state, month, filename))
                texts.pop(position)
                continue
            try:
                text = texts.pop(position) if position in texts else decoded(data, filename)
                try:  # (a file ``read_plain`` tried and left is not plain: not tried again)
                    result = _read_file(text, spec, state, month, filename, pii_key, spill_dir,
                                        plain=position not in tried)
                except plain_csv.NotPlain:  # Arrow met a line the csv module reads otherwise
                    result = _read_file(text, spec, state, month, filename, pii_key, spill_dir,
                                        plain=False)
                if isinstance(result, SpilledRows):
                    spilled[position] = result
                else:
                    read.append((position, *result, state, month, filename))
            except FileRejected as rejected:
                verdicts[position] = rejected
        if len(read) == 1:
            checked = [rejection(text_frame(read[0][1], read[0][2]), spec, read[0][3],
                                 read[0][4])]
        elif read:
            combined = text_frame(pa.concat_tables([columns for _, columns, *_ in read])
                                  .combine_chunks())
            checked = validate_combined(
                combined,
                [(columns.num_rows, state, month) for _, columns, _, state, month, _ in read],
                lambda number: text_frame(read[number][1], read[number][2]), spec)
        else:
            checked = []
        good = []
        for (position, columns, _, state, month, filename), rejected in zip(read, checked):
            if rejected is None:
                good.append((columns, state, month, filename))
            else:
                verdicts[position] = rejected
        table = None
        if good:
            frame = (combined if len(good) == len(read) > 1 else text_frame(
                pa.concat_tables([columns for columns, *_ in good]).combine_chunks()))
            table = to_table_combined(
                frame, [(columns.num_rows, *rest) for columns, *rest in good], spec, pii_key)
    except BaseException:
        for rows in spilled.values():
            rows.discard()
        raise
    in_table = iter(columns.num_rows for columns, *_ in good)
    rows = [spilled[position].num_rows if position in spilled else next(in_table)
            for position, verdict in enumerate(verdicts) if verdict is None]
    return PreparedFiles(verdicts, table, rows, time.perf_counter() - started, os.getpid(),
                         spilled)


def _read_file(text: str | Utf8Text, spec, state: str, month: dt.date, filename: str,
               pii_key: str, spill_dir: str | None, plain: bool
               ) -> tuple[pa.Table, Sequence[int]] | SpilledRows:
    """One file not read with others: its text columns and lines, or - more than
    ``slices.SLICE_ROWS`` records - its typed rows spilled a slice at a time. ``plain``: by
    Arrow's reader when the file is plain (``plain_csv.plain_batches``; raises ``NotPlain``
    when it turns out not to be), else by the csv module."""
    batches = None
    if plain:
        data, start = ((text.data, text.start) if isinstance(text, Utf8Text)
                       else (text.encode("utf-8"), 0))
        batches = plain_csv.plain_batches(data, start, spec.input_columns,
                                          csv_reader.READ_BATCH_ROWS)
        data = None
    if batches is None:
        batches = csv_reader.column_batches(text, spec)
    head, count = [], 0
    for batch in batches:
        head.append(batch)
        count += batch[0].num_rows
        if count > slices.SLICE_ROWS:
            break
    else:
        return joined_batches(head)
    spilled_rows = prepare_in_slices(itertools.chain(_drained(head), batches), spec, state,
                                     month, filename, pii_key, spill_dir)
    head = batches = None
    if spilled_rows is not None:
        return spilled_rows
    # A slice broke a rule: the file is read whole, so that its rejection reads as it always
    # does (every failing row of the file, in one report).
    return read_text_columns(text, spec)


def _drained(held: list) -> Iterator:
    """``held``'s items in order, each let go of as it is given."""
    held.reverse()
    while held:
        yield held.pop()
