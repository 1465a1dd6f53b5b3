"""Reading the first inbox files while ``bdt ingest`` is still starting up.

Before its run's first asset starts, ``bdt ingest`` spends seconds importing Dagster, opening the
instance and planning the run, while the worker processes that read the files (``workers``)
would wait for their first chunk. Instead the command lists a local inbox folder first and sends
its first files (up to ``BUDGET_BYTES``, in the order the run lands them) to the workers at
once (``start``). When the run's loader reaches one of these files, it takes the result
(``take``) instead of sending the file again, and it sends its other files to the same workers.

A result is taken only for the same feed, file name, bytes (sha256), state, month and PII key as
it was made from: a file that changed since it was read, or a run that sees it otherwise, is read
afresh, and what nobody took is dropped when the command ends. Only ``bdt ingest`` starts one,
and only for a local inbox folder (over SFTP each such file would be downloaded twice); runs
started by the sensor or from the UI read all their files themselves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa

from bdt_platform.feeds import parsing, workers
from bdt_platform.feeds.filenames import BadFileName, parse_drop_name
from bdt_platform.inbox.base import Inbox
from bdt_platform.partitions import partition_key

#: Bytes of inbox files read ahead at most (the results wait in memory until the run takes
#: them): about what two workers read while a 2-core machine starts a run.
BUDGET_BYTES = 16 * 2**20


@dataclass(frozen=True)
class _FileKey:
    feed: str
    filename: str
    sha256: str
    state: str
    month: dt.date
    pii_key: str = field(repr=False)


def _key(feed: str, filename: str, data: bytes, state: str, month: dt.date, pii_key: str
         ) -> _FileKey:
    return _FileKey(feed, filename, hashlib.sha256(data).hexdigest(), state, month, pii_key)


class Gathered:
    """Several prefetched files, as one chunk: ``done`` and ``result`` as a Future of
    ``parsing.prepare_files`` for exactly these files, in this order, would give."""

    def __init__(self, parts: list[tuple[Future, int]]):
        self.parts = parts  # per file: the future of the chunk it was read in, and its place

    def done(self) -> bool:
        return all(future.done() for future, _ in self.parts)

    def result(self) -> parsing.PreparedFiles:
        verdicts, tables, rows, made_by = [], [], [], {}
        for future, position in self.parts:
            prepared = future.result()
            made_by[id(prepared)] = prepared
            verdict, table, count = prepared.file(position)
            verdicts.append(verdict)
            if verdict is None:
                tables.append(table)
                rows.append(count)
        first = next(iter(made_by.values()))
        return parsing.PreparedFiles(
            verdicts, pa.concat_tables(tables) if tables else None, rows,
            max(prepared.seconds for prepared in made_by.values()), first.process)


class Prefetch:
    """Files sent to the workers ahead of the run, by what they were read from."""

    def __init__(self, runner: workers.ChunkRunner):
        self.runner = runner
        self._files: dict[_FileKey, tuple[Future, int]] = {}
        self.sent = self.taken = 0

    def send(self, feed: str, files: list[tuple[str, bytes, str, dt.date]], pii_key: str
             ) -> None:
        """Have one chunk of ``(file name, bytes, state, month)`` of ``feed`` read."""
        future = self.runner.submit(parsing.prepare_files, feed, files, pii_key)
        for position, (filename, data, state, month) in enumerate(files):
            self._files[_key(feed, filename, data, state, month, pii_key)] = (future, position)
        self.sent += len(files)

    def take(self, feed: str, filename: str, data: bytes, state: str, month: dt.date,
             pii_key: str) -> tuple[Future, int] | None:
        """The result for this file read from exactly these bytes, once; None when there is none."""
        if not self._files:
            return None  # all taken: the run's other files are not hashed for nothing
        found = self._files.pop(_key(feed, filename, data, state, month, pii_key), None)
        self.taken += found is not None
        return found

    def close(self) -> None:
        self._files.clear()
        self.runner.close()


_active: Prefetch | None = None


def active() -> Prefetch | None:
    """The prefetch of this process's ``bdt ingest``, if one was started."""
    return _active


def start(inbox: Inbox, pii_key: str, *, processes: int | None = None,
          budget_bytes: int = BUDGET_BYTES) -> Prefetch | None:
    """List ``inbox`` and send its first files to worker processes; None (nothing started) when
    the listing is too small for workers (``workers.worker_count``) or nothing parses.

    Files are read in the order the run lands them (its assets run in the order of their
    names; each lands partition by partition, ``month|state``), cut into chunks as the loaders
    cut them (``workers.PARALLEL_CHUNK_BYTES``, ``workers.chunk_file_limit``): the first feed's
    up to ``budget_bytes``, then one chunk per worker of every other feed (the run's loader
    waits for its first chunks at the start of each feed otherwise)."""
    global _active
    stop()
    by_feed: dict[str, list] = {}
    for file in inbox.list_files():
        try:
            name = parse_drop_name(file.folder, file.name)
        except BadFileName:
            continue  # ``bdt ingest`` quarantines it without a run
        by_feed.setdefault(name.feed, []).append((partition_key(name.state, name.month),
                                                  file.mtime, file, name))
    listed = sum(len(files) for files in by_feed.values())
    processes = workers.worker_count(-1, listed) if processes is None else processes
    if processes <= 0 or not listed:
        return None
    _active = prefetch = Prefetch(workers.ChunkRunner(processes))
    budget = budget_bytes
    # The first feed's files up to the budget, then the first chunk per worker of every other
    # feed, so that no feed's asset starts by waiting for its first chunks.
    for number, feed in enumerate(sorted(by_feed)):
        files = sorted(by_feed[feed], key=lambda item: item[:2])
        for sent, chunk in enumerate(_chunks(inbox, files, processes), start=1):
            prefetch.send(feed, chunk, pii_key)
            budget -= sum(len(data) for _, data, _, _ in chunk)
            if (budget <= 0) if number == 0 else sent >= processes:
                break
    return prefetch


def _chunks(inbox: Inbox, files: list, processes: int) -> Iterator[list]:
    """``files`` (one feed's, in landing order) read and cut as its loader cuts them."""
    limit = workers.chunk_file_limit(len(files), processes)
    chunk, chunk_bytes = [], 0
    for _, _, file, name in files:
        data = inbox.read_bytes(file.path)
        chunk.append((name.filename, data, name.state, name.month))
        chunk_bytes += len(data)
        if workers.chunk_full(chunk_bytes, len(chunk), workers.PARALLEL_CHUNK_BYTES, limit):
            yield chunk
            chunk, chunk_bytes = [], 0
    if chunk:
        yield chunk


def stop() -> None:
    """Drop what was not taken and stop the workers (the end of ``bdt ingest``)."""
    global _active
    if _active is not None:
        _active.close()
        _active = None


@contextmanager
def chunk_runner(processes: int) -> Iterator[workers.ChunkRunner]:
    """The workers of the active prefetch when it has ``processes`` of them (they go on after
    the caller is done), else ``workers.chunk_runner(processes)``."""
    if processes > 0 and _active is not None and _active.runner.processes == processes:
        yield _active.runner
        return
    with workers.chunk_runner(processes) as runner:
        yield runner
