"""A big file validated, tokenized and typed a slice at a time, its typed rows spilled to disk.

A file of more than ``SLICE_ROWS`` records (``parsing.prepare_files`` counts them as it reads)
goes through the contract and the typed table ``SLICE_ROWS`` records at a time, each slice's
typed rows written to a spill file on local disk as they are made (``storage.staged_rows``):
the memory a run needs then grows with a slice and the file's text, not with all of its rows
as pandas and Arrow objects. When a slice breaks a rule the file is read whole again, so that
its rejection reads as it always does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from bdt_platform.feeds.contract_rules import unique_columns
from bdt_platform.feeds.csv_reader import joined_batches, text_frame
from bdt_platform.feeds.specs import FeedSpec
from bdt_platform.feeds.typed_table import to_table
from bdt_platform.feeds.validation import rejection
from bdt_platform.storage.staged_rows import SpilledRows, SpillWriter

# Records in a slice; a file of more is read a slice at a time. (Smaller files are validated
# together, a chunk of files per pandera call.)
SLICE_ROWS = 16_384


def _slices(batches: Iterable[tuple[pa.Table, Sequence[int]]]
            ) -> Iterator[tuple[pa.Table, Sequence[int]]]:
    """``csv_reader.column_batches``' batches joined into slices of at most ``SLICE_ROWS``
    records (or one batch, when a batch holds more)."""
    held: list[tuple[pa.Table, Sequence[int]]] = []
    count = 0
    for batch in batches:
        if held and count + batch[0].num_rows > SLICE_ROWS:
            yield joined_batches(held)
            held, count = [], 0
        held.append(batch)
        count += batch[0].num_rows
    if held:
        yield joined_batches(held)


def prepare_in_slices(batches: Iterable[tuple[pa.Table, Sequence[int]]], spec: FeedSpec,
                      state: str, month: dt.date, filename: str, pii_key: str,
                      spill_dir: str | None = None) -> SpilledRows | None:
    """A big file's batches validated, tokenized and typed a slice at a time, its typed rows
    written to a spill file as they come: the file's bytes and a slice are in memory, never
    all its rows as Python, pandas and Arrow objects at once.

    Every rule of the contracts but one is about a row alone (and the file's state and
    month), so a slice keeps it exactly when its rows do in the whole file; values unique
    within the file are also checked across slices (by their 64-bit hashes, 8 bytes a row).
    None when any rule is broken (or two ids share a hash): the caller then reads the file
    whole, for the report it always gives. A file whose rows have the wrong number of fields
    raises its rejection (``csv_reader.column_batches``) once they are all read."""
    keys = {column: [] for column in unique_columns(spec.contract)}
    writer: SpillWriter | None = None
    try:
        for columns, lines in _slices(batches):
            frame = text_frame(columns, lines)
            if rejection(frame, spec, state, month) is not None:
                if writer is not None:
                    writer.abandon()
                return None
            for column, values in keys.items():
                # Each id as a 64-bit hash (8 bytes a row, in NumPy: an Arrow buffer kept from
                # each slice would hold on to the memory around it).
                values.append(pd.util.hash_array(
                    columns.column(column).to_numpy(zero_copy_only=False)))
            typed = to_table(frame, spec, state=state, month=month, source_file=filename,
                             pii_key=pii_key)
            frame = columns = None
            if writer is None:
                writer = SpillWriter(typed.schema, spill_dir)
            writer.write(typed)
            typed = None
            # Arrow's allocator keeps what a slice freed, and the next slice mostly takes new
            # memory instead: give it back, or the file's slices add up after all.
            pa.default_memory_pool().release_unused()
        for values in keys.values():
            hashes = np.sort(np.concatenate(values))
            if (hashes[1:] == hashes[:-1]).any():  # a repeated id (or, rarely, two ids' hash)
                writer.abandon()
                return None
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    return writer.finish()
