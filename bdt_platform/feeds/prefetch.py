"""Reading inbox files ahead of ``bdt ingest``'s run, so that its workers never wait for it.

Before its run's first asset starts, ``bdt ingest`` spends seconds importing Dagster, opening the
instance and planning the run; and between two feeds' assets the run's process commits the
first one's rows and records its materializations, then starts the next one. Meanwhile the
worker processes that read the files (``workers``) would wait for their next chunk. Instead the
command lists a local inbox folder first, plans every listed file's chunk in the order the run
lands them, and has a thread keep the workers up to ``BUDGET_BYTES`` of files ahead of the run
(``start``): when the run's loader takes a result (``take``) instead of sending the file
again, or a worker finishes a chunk, the next planned files are read and sent. A feed's files
that were not read ahead are sent by its loader to the same workers.

A result is taken only for the same feed, file name, bytes, state, month and PII key as it was
made from: a file that changed since it was read, or a run that sees it otherwise, is read
afresh, and what nobody took is dropped when the command ends. Only ``bdt ingest`` starts one,
and only for a local inbox folder (over SFTP each such file would be downloaded twice); runs
started by the sensor or from the UI read all their files themselves.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa

from bdt_platform.feeds import parsing, workers
from bdt_platform.feeds.filenames import BadFileName, parse_drop_name
from bdt_platform.core.inbox_interface import Inbox
from bdt_platform.core.partitions import partition_key

#: Bytes of inbox files read ahead and not yet taken by the run, at most (the files and their
#: results wait in memory until the run takes them): about what two workers read while a 2-core
#: machine starts a run, or while the run ends one feed's asset and starts the next.
BUDGET_BYTES = 16 * 2**20


@dataclass(frozen=True)
class _FileKey:
    feed: str
    filename: str
    state: str
    month: dt.date
    pii_key: str = field(repr=False)


def _key_of(feed: str, name, pii_key: str) -> _FileKey:
    """The key of a planned file (its parsed drop name)."""
    return _FileKey(feed, name.filename, name.state, name.month, pii_key)


@dataclass(frozen=True)
class _Sent:
    """A file read ahead: the bytes it was read from, and its chunk's result and place in it."""

    data: bytes = field(repr=False)
    future: Future
    position: int


class Gathered:
    """Several prefetched files, as one chunk: ``done`` and ``result`` as a Future of
    ``parsing.prepare_files`` for exactly these files, in this order, would give."""

    def __init__(self, parts: list[tuple[Future, int]]):
        self.parts = parts  # per file: the future of the chunk it was read in, and its place

    def done(self) -> bool:
        return all(future.done() for future, _ in self.parts)

    def result(self) -> parsing.PreparedFiles:
        verdicts, tables, rows, spilled, made_by = [], [], [], {}, {}
        for number, (future, position) in enumerate(self.parts):
            prepared = future.result()
            made_by[id(prepared)] = prepared
            verdict, table, count = prepared.file(position)
            verdicts.append(verdict)
            if verdict is None:
                if isinstance(table, pa.Table):
                    tables.append(table)
                else:
                    spilled[number] = table
                rows.append(count)
        first = next(iter(made_by.values()))
        return parsing.PreparedFiles(
            verdicts, pa.concat_tables(tables) if tables else None, rows,
            max(prepared.seconds for prepared in made_by.values()), first.process, spilled)


class Prefetch:
    """Files sent to the workers ahead of the run, by what they were read from; and, when
    started with a plan, a thread that reads and sends the planned chunks in order, while the
    files sent and not taken stay under the budget and at most one chunk per worker, plus
    one, waits for a worker (so the archive copies the run's loader sends to the same workers
    wait behind that much at most)."""

    def __init__(self, runner: workers.ChunkRunner, inbox: Inbox | None = None,
                 pii_key: str = "", plan: list[tuple[str, list]] | None = None,
                 budget_bytes: int = BUDGET_BYTES):
        self.runner = runner
        # Big files' typed rows wait in this folder (made by the first ``send``) until the run
        # writes them (``parsing``); what the run never takes goes with it (``close``).
        self.spill_dir: str | None = None
        self._files: dict[_FileKey, _Sent] = {}
        self._inbox, self._pii_key, self._budget = inbox, pii_key, budget_bytes
        self._plan = deque(plan or [])  # (feed, [(inbox file, drop name)]) per chunk to send
        # Planned files not sent yet; a file the run asks for before it is sent is left to the
        # run (it sends it itself) and no longer sent.
        self._planned = {_key_of(feed, name, pii_key)
                         for feed, entries in self._plan for _, name in entries}
        self._reading: set[_FileKey] = set()  # being read by the reader thread, to be sent
        self._untaken_bytes = 0
        self._unfinished = 0  # chunks sent and not yet read by a worker
        self._changed = threading.Condition()
        self._closed = self._reader_done = False
        self.sent = self.taken = 0
        self._reader = None
        if self._plan:
            self._reader = threading.Thread(target=self._read_plan, name="bdt-read-ahead",
                                            daemon=True)
            self._reader.start()

    def send(self, feed: str, files: list[tuple[str, bytes, str, dt.date]], pii_key: str
             ) -> None:
        """Have one chunk of ``(file name, bytes, state, month)`` of ``feed`` read."""
        with self._changed:
            if self.spill_dir is None:
                self.spill_dir = tempfile.mkdtemp(prefix="bdt-rows-ahead-")
            future = self.runner.submit(parsing.prepare_files, feed, files, pii_key,
                                        self.spill_dir)
            self._unfinished += 1
            for position, (filename, data, state, month) in enumerate(files):
                key = _FileKey(feed, filename, state, month, pii_key)
                replaced = self._files.get(key)
                if replaced is not None:
                    self._untaken_bytes -= len(replaced.data)
                self._files[key] = _Sent(data, future, position)
                self._untaken_bytes += len(data)
            self.sent += len(files)
        future.add_done_callback(self._finished)

    def _finished(self, _future: Future) -> None:
        with self._changed:
            self._unfinished -= 1
            self._changed.notify_all()

    def take(self, feed: str, filename: str, data: bytes, state: str, month: dt.date,
             pii_key: str) -> tuple[Future, int] | None:
        """The result for this file read from exactly these bytes, once; None when there is
        none (the file changed since it was read: it is to be read afresh)."""
        with self._changed:
            key = _FileKey(feed, filename, state, month, pii_key)
            self._changed.wait_for(lambda: key not in self._reading)
            found = self._files.pop(key, None)
            if found is None:
                self._planned.discard(key)  # the run reads it: not to be read again
                return None
            self._untaken_bytes -= len(found.data)
            self._changed.notify_all()
            if found.data != data:
                return None
            self.taken += 1
            return found.future, found.position

    def _may_send(self) -> bool:
        return (self._untaken_bytes < self._budget
                and self._unfinished <= self.runner.processes)

    def _read_plan(self) -> None:
        """The reader thread: send the planned chunks in order, as ``_may_send`` allows."""
        try:
            while self._send_next():
                pass
        except RuntimeError:
            pass  # the workers were shut down (the command is ending)
        finally:
            with self._changed:
                self._reader_done = True
                self._changed.notify_all()

    def _send_next(self) -> bool:
        """Wait until a chunk may be sent, read its files and send it; False when there is
        nothing more to send."""
        with self._changed:
            while not self._closed and self._plan and not self._may_send():
                self._changed.wait()
            if self._closed or not self._plan:
                return False
            feed, entries = self._plan.popleft()
            keyed = [(_key_of(feed, name, self._pii_key), file, name) for file, name in entries]
            keyed = [item for item in keyed if item[0] in self._planned]
            for key, _, _ in keyed:
                self._planned.discard(key)
                self._reading.add(key)
        try:
            chunk = []
            for _, file, name in keyed:
                try:
                    data = self._inbox.read_bytes(file.path)
                except OSError:
                    continue  # gone or unreadable now: the run reads (or reports) it itself
                chunk.append((name.filename, data, name.state, name.month))
            if chunk:
                self.send(feed, chunk, self._pii_key)
        finally:
            with self._changed:
                self._reading.difference_update(key for key, _, _ in keyed)
                self._changed.notify_all()
        return True

    def wait_for_the_run(self, timeout: float = 30.0) -> bool:
        """Wait until the reader thread sent what the budget allows (or every planned chunk),
        so that only the run taking files lets it send more; False when ``timeout`` passed."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._reader is None or self._reader_done or (
                    self._untaken_bytes >= self._budget and not self._reading), timeout)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._files.clear()
            self._plan.clear()
            self._planned.clear()
            self._changed.notify_all()
        if self._reader is not None:
            self._reader.join()
        self.runner.close()
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)


_active: Prefetch | None = None


def active() -> Prefetch | None:
    """The prefetch of this process's ``bdt ingest``, if one was started."""
    return _active


def start(inbox: Inbox, pii_key: str, *, processes: int | None = None,
          budget_bytes: int = BUDGET_BYTES) -> Prefetch | None:
    """List ``inbox``, plan its files' chunks and send the first ``budget_bytes`` of them to
    worker processes; None (nothing started) when the listing is too small for workers
    (``workers.worker_count``: by its files and bytes) or nothing parses. The run's feed assets
    then use these workers, however few files each feed has (``file_assets``).

    Files are planned in the order the run lands them (its assets run in the order of their
    names; each lands partition by partition, ``month|state``), cut into chunks as the loaders
    cut them (``workers.PARALLEL_CHUNK_BYTES``, ``workers.chunk_file_limit``), so that at the
    end of one feed the workers already read the next one's first files."""
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
    listed_bytes = sum(file.size for files in by_feed.values() for _, _, file, _ in files)
    processes = (workers.worker_count(-1, listed, listed_bytes) if processes is None
                 else processes)
    if processes <= 0 or not listed:
        return None
    plan = []
    for feed in sorted(by_feed):
        files = sorted(by_feed[feed], key=lambda item: item[:2])
        plan.extend((feed, chunk) for chunk in _chunks(files, processes))
    _active = prefetch = Prefetch(workers.ChunkRunner(processes), inbox, pii_key, plan,
                                  budget_bytes)
    return prefetch


def _chunks(files: list, processes: int) -> Iterator[list]:
    """``files`` (one feed's, in landing order) cut as its loader cuts them: the
    ``(inbox file, drop name)`` of each chunk."""
    limit = workers.chunk_file_limit(len(files), processes)
    chunk, chunk_bytes = [], 0
    for _, _, file, name in files:
        chunk.append((file, name))
        chunk_bytes += file.size
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
