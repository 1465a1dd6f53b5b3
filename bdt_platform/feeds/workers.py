"""Where the feed loaders' CPU work runs: in the run's own process, or in worker processes.

Decoding, reading, validating and tokenizing a chunk of files (``parsing.prepare_files``) is pure
CPU work in pandas and pandera, bound to one core by Python. A year of 51 states is ~2,500
files; on a machine with more than one core the loader sends chunks to worker processes, which
also write the accepted files' archive copies in the lake, and meanwhile writes and records the
chunks already done (the warehouse has one writer: the run's process). Small runs stay
in-process: starting workers costs more than they save.

Workers are forked from a *fork server* that has imported the parsing code once (Python's
``forkserver`` start method): each starts in milliseconds, and none is forked from the run's
process, whose threads (DuckDB's, Dagster's) must not be copied mid-operation.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.forkserver
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

#: Runs landing at least this many files, or this many bytes, use worker processes (when the
#: machine has 2+ cores): 16 files of 3 MB (a state-month at generator scale 100) are as much
#: work as a year of a small program's.
PARALLEL_MIN_FILES = 64
PARALLEL_MIN_BYTES = 16 * 2**20
#: Worker processes at most, whatever the number of cores (memory: each holds one chunk).
MAX_WORKERS = 4
# The fork server imports the program's main module and the parsing code (warmed up:
# ``worker_start``) once: a worker forked from it then finds ``__main__`` in place instead of
# importing it again (multiprocessing's spawn rule), which for a Dagster run worker would be all
# of Dagster per worker, and pandera ready instead of loading its backends on its first chunk.
_PRELOADED = ["__main__", "bdt_platform.feeds.worker_start"]


# Files are validated and loaded in chunks of about this many bytes: one pandera call and one
# warehouse write per chunk instead of per file, while memory stays bounded by a few chunks (or
# by the largest file, when one file is bigger).
CHUNK_BYTES = 8 * 2**20
# With worker processes, smaller chunks keep every worker busy until the run's last files.
PARALLEL_CHUNK_BYTES = 2 * 2**20
# ... and a feed of small files is cut into at least this many chunks per worker, whatever its
# bytes: 612 outcome files of ~1.5 KB are one chunk by size, which would leave one worker idle
# and the run's process waiting. The limit is never below MIN_CHUNK_FILES (pandera's fixed cost
# per call).
CHUNKS_PER_WORKER = 4
MIN_CHUNK_FILES = 16


def chunk_file_limit(files: int, processes: int) -> int | None:
    """Files per chunk at most, for a run of ``files`` partitions validated in ``processes``
    worker processes; None (bytes alone decide) without workers."""
    if processes <= 0:
        return None
    return max(MIN_CHUNK_FILES, math.ceil(files / (processes * CHUNKS_PER_WORKER)))


def chunk_full(chunk_bytes: int, files: int, byte_limit: int, file_limit: int | None) -> bool:
    """Whether a chunk of ``files`` files holding ``chunk_bytes`` bytes is to be sent now."""
    return chunk_bytes >= byte_limit or (file_limit is not None and files >= file_limit)


def worker_count(requested: int, files: int, total_bytes: int = 0) -> int:
    """How many worker processes a run uses: ``requested`` when it is 0 or more; otherwise one
    per core (at most ``MAX_WORKERS``) when the run lands ``PARALLEL_MIN_FILES`` files or
    ``PARALLEL_MIN_BYTES`` bytes or more (when known) on a machine with two cores or more, else
    none."""
    if requested >= 0:
        return requested
    cores = usable_cores()
    big = files >= PARALLEL_MIN_FILES or total_bytes >= PARALLEL_MIN_BYTES
    return min(cores, MAX_WORKERS) if cores > 1 and big else 0


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's share where it is
    set that way; the machine's count elsewhere)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOADED)
        return context
    return multiprocessing.get_context("spawn")  # Windows: each worker starts a new interpreter


def start_server_early() -> bool:
    """Start the fork server now, so that it imports the parsing code (~1.3 s of pandas, pandera
    and pyarrow) on another core while the caller is still starting up (importing Dagster,
    opening its instance), instead of when the first chunk is sent. Only on machines where a
    large run would use workers (two cores or more, ``forkserver``); True when started. An
    unused server costs that one import and exits with the caller."""
    if usable_cores() < 2 or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    _context()
    multiprocessing.forkserver.ensure_running()
    return True


class ChunkRunner:
    """Runs functions on chunks: at once in this process (``processes == 0``), or in a pool."""

    def __init__(self, processes: int):
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        if processes > 0:
            self._pool = ProcessPoolExecutor(max_workers=processes, mp_context=_context())

    @property
    def in_flight_limit(self) -> int:
        """Chunks submitted and not yet collected, at most: one per worker plus one queued, so
        no worker waits while memory stays bounded by a few chunks."""
        return self.processes + 1 if self._pool else 0

    def submit(self, function: Callable, *args) -> Future:
        if self._pool is not None:
            return self._pool.submit(function, *args)
        done: Future = Future()
        try:
            done.set_result(function(*args))
        except Exception as exc:  # noqa: BLE001 - raised to the caller by .result()
            done.set_exception(exc)
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def chunk_runner(processes: int) -> Iterator[ChunkRunner]:
    runner = ChunkRunner(processes)
    try:
        yield runner
    finally:
        runner.close()
