"""Rows on their way to a warehouse table: Arrow tables in memory, and big files' rows spilled
to local disk.

A big partner file is validated and typed a slice at a time (``parsing``); its typed rows go to
an Arrow IPC stream in a temporary file instead of staying in memory, and the warehouse reads
them back a record batch at a time while it inserts them. The run's peak memory then grows with
a slice, not with the file (the spilled rows take disk space once, and are deleted when they
are written, or when the write fails).

:class:`SpilledRows` is picklable (a path, a schema and counts), so a worker process can spill
a file and the run's process load it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

SPILL_PREFIX = "bdt-rows-"


@dataclass(frozen=True)
class SpilledRows:
    """Typed rows in an Arrow IPC stream file on local disk (written by ``SpillWriter``)."""

    path: str
    schema: pa.Schema
    num_rows: int

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The rows, one record batch at a time (each as written)."""
        with pa.OSFile(self.path) as source:
            yield from pa.ipc.open_stream(source)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class SpillWriter:
    """Writes tables of one schema to a new spill file in ``directory`` (None: the system's
    temporary folder), in order; ``finish`` says what it holds, ``abandon`` deletes it."""

    def __init__(self, schema: pa.Schema, directory: str | None = None):
        handle, self.path = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".arrows",
                                             dir=directory)
        os.close(handle)
        self.schema = schema
        self._sink = pa.OSFile(self.path, "wb")
        self._writer = pa.ipc.new_stream(self._sink, schema)
        self.num_rows = 0

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table)
        self.num_rows += table.num_rows

    def finish(self) -> SpilledRows:
        self._writer.close()
        self._sink.close()
        return SpilledRows(self.path, self.schema, self.num_rows)

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        with contextlib.suppress(Exception):
            self._sink.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class StagedRows:
    """Rows for one table, in order, as parts: tables in memory and spilled files. The parts
    share one schema. Read them once (``reader``) or whole (``read_all``); ``discard`` deletes
    the spilled parts' files."""

    def __init__(self, parts: Sequence[pa.Table | SpilledRows]):
        if not parts:
            raise ValueError("staged rows need at least one part (for their schema)")
        self.parts = list(parts)
        self.schema = self.parts[0].schema

    @property
    def num_rows(self) -> int:
        return sum(part.num_rows for part in self.parts)

    @property
    def spilled(self) -> bool:
        return any(isinstance(part, SpilledRows) for part in self.parts)

    def batches(self) -> Iterator[pa.RecordBatch]:
        for part in self.parts:
            if isinstance(part, SpilledRows):
                yield from part.batches()
            else:
                yield from part.to_batches()

    def reader(self) -> pa.RecordBatchReader:
        """A reader of every row, a batch at a time: spilled rows are read from disk as they
        are consumed."""
        return pa.RecordBatchReader.from_batches(self.schema, self.batches())

    def read_all(self) -> pa.Table:
        return pa.Table.from_batches(list(self.batches()), schema=self.schema)

    def discard(self) -> None:
        for part in self.parts:
            if isinstance(part, SpilledRows):
                part.discard()
