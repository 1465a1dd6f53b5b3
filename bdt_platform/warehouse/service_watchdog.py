"""While dbt works on a remote warehouse, check that the service can still be reached, and stop
dbt when it cannot for too long.

Why: when BigQuery cannot be reached (refused, reset, timed out, or answering 5xx), Google's
client library inside dbt-bigquery retries each call for up to 10 minutes without a word, and
no profile setting shortens that (``job_retry_deadline_seconds`` bounds dbt's own retries and its
polling only). A build would hang silently for ten minutes per model. This watchdog asks the
service's REST root every few seconds (any HTTP answer below 500, even a 401 without
credentials, means it is there) and, after ``give_up_after`` seconds of failures in a row,
interrupts dbt (SIGINT, then SIGKILL if it does not stop) and lets the step fail with
:class:`WarehouseUnreachable`: a transient error, so the step's retry policy runs it again later.
Nothing half-done stays behind: on BigQuery each fact's MERGE replaces its partitions in one
statement (``dbt_project/macros/partitioning.sql``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

#: Seconds a probe request may take before it counts as a failure.
PROBE_TIMEOUT = 10.0
#: Seconds dbt gets to stop after SIGINT before it is killed.
STOP_GRACE = 20.0


class WarehouseUnreachable(ConnectionError):
    """The warehouse service could not be reached for the watchdog's whole grace period."""


def probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when ``url`` answers with any status below 500; else what went wrong, in words."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as error:
        return None if error.code < 500 else f"HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        return f"{type(reason).__name__}: {reason}"


def interrupt(process: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGINT (dbt stops its threads and exits), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


class ServiceWatchdog:
    """``with ServiceWatchdog(name, url, give_up_after, on_lost):`` probes ``url`` in a thread
    while the block runs; calls ``on_lost()`` once when every probe for ``give_up_after``
    seconds failed. :meth:`error` then describes what happened."""

    def __init__(self, name: str, url: str, give_up_after: float,
                 on_lost: Callable[[], None], interval: float | None = None):
        self.name, self.url, self.give_up_after = name, url, give_up_after
        self.on_lost = on_lost
        self.interval = interval or min(15.0, max(0.5, give_up_after / 4))
        self.lost = threading.Event()
        self.last_problem: str | None = None
        self.down_for = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name=f"{name}-watchdog")

    def __enter__(self) -> ServiceWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=PROBE_TIMEOUT + STOP_GRACE + 5)

    def _watch(self) -> None:
        down_since: float | None = None
        while not self._stop.wait(self.interval):
            problem = probe(self.url, timeout=min(PROBE_TIMEOUT, self.give_up_after))
            now = time.monotonic()
            if problem is None:
                down_since = None
                continue
            self.last_problem = problem
            down_since = down_since if down_since is not None else now
            self.down_for = now - down_since
            if self.down_for >= self.give_up_after:
                self.lost.set()
                self.on_lost()
                return

    def error(self, what: str) -> WarehouseUnreachable:
        return WarehouseUnreachable(
            f"{self.name} could not be reached at {self.url.split('?')[0]} for "
            f"{self.down_for:.0f} s while {what} ran (last: {self.last_problem}); {what} was "
            f"stopped. Each model either finished or left its table as it was.")
