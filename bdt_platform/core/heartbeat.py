"""Progress lines while a long in-process run works: a run of a year of 51 states can spend
minutes in one step (one feed's 612 partitions, one dbt command, the mail lists), and the
console would otherwise be silent until the step ends.

``core.runs.execute`` keeps a :class:`Heartbeat` while its run executes: every ``every`` seconds
(20 by default) it prints one line to stderr (stdout may be dbt's log) naming the run, how long
it has run and what the run's assets last said with :func:`note` (``eligibility: 120/612
partitions read, 2,301,554 rows``). A step notes what it is doing at the points where it knows
(a chunk of files landed, a dbt node finished, a partition's mail list made); the line says how
long ago that was, so a long silent statement shows as such. A run shorter than ``every`` prints
nothing; a run launched by the daemon (no ``execute``) notes to nobody.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

_lock = threading.Lock()
_latest: dict[str, tuple[str, float] | None] = {"note": None}
_listening = {"count": 0}


def note(text: str) -> None:
    """What the running step is doing now (cheap: a string kept for the next heartbeat)."""
    if _listening["count"]:
        with _lock:
            _latest["note"] = (text, time.monotonic())


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Heartbeat:
    """A thread printing ``"  ... <what>: running <T>; <last note> (<ago> ago)"`` every
    ``every`` seconds until the ``with`` block ends."""

    def __init__(self, what: str, every: float = 20.0,
                 write: Callable[[str], None] | None = None):
        self.what, self.every = what, every
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="bdt-heartbeat")

    def __enter__(self) -> "Heartbeat":
        self.started = time.monotonic()
        with _lock:
            _listening["count"] += 1
            _latest["note"] = None
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        with _lock:
            _listening["count"] -= 1

    def line(self) -> str:
        now = time.monotonic()
        with _lock:
            latest = _latest["note"]
        text = f"  ... {self.what}: running {_ago(now - self.started)}"
        if latest is not None:
            said, at = latest
            text += f"; {said} ({_ago(now - at)} ago)"
        return text

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            line = self.line()
            self.lines.append(line)
            try:
                self.write(line)
            except (OSError, ValueError):  # a closed stream must not kill the run
                pass
