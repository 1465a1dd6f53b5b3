"""Transient failures of a step, retried by Dagster within the same run; every other failure
fails the step at once.

Transient: what is briefly unavailable and comes back by itself, where running the step again
is safe because nothing was committed (warehouse writes are one transaction per batch, inbox
files move to ``processed/`` only after the commit, outbox files are renamed into place only
when whole):

- the DuckDB warehouse file, while another process holds its write lock (``WarehouseBusy``,
  or DuckDB's own "Could not set lock" from inside dbt);
- the partner SFTP server (``InboxUnavailable``, ``OutboxUnavailable``: refused, reset, timed
  out). These also cover a refused host key or sign-in, which retrying does not fix: such a
  step fails after its retries (about 35 s later), with the same message;
- Google Cloud (BigQuery, GCS) answering 429 or 5xx (``google.api_core`` ``ServerError`` /
  ``TooManyRequests``, gcsfs ``HttpError``), or the same from inside dbt's BigQuery adapter;
- a connection refused, reset or timed out on the way (``ConnectionError``, ``TimeoutError``).

How: each asset that writes the warehouse or talks to SFTP, GCS or BigQuery declares
``TRANSIENT_RETRY_POLICY`` (``RetryPolicy``: 3 retries, exponential backoff from 5 s with
jitter; the UI shows it) and its compute function is decorated with :func:`transient_retries`
(its whole body runs inside :func:`retried_when_transient`), which asks
Dagster for the retry itself on a transient error (``RetryRequested``: 5, 10, 20 s, each plus
up to half again at random, so two runs that met the same lock do not come back together)
and marks every other error final (``Failure(allow_retries=False)``, the original error as its
cause), so the policy never retries a bad file or a bug. A ``RetryPolicy`` alone retries every
exception; the policy still covers what happens outside the block (an IO manager writing the
step's output to the lake, a resource starting).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import sys
from collections.abc import Callable, Iterator

import dagster as dg

from bdt_platform.core.inbox_interface import InboxUnavailable
from bdt_platform.outbox.base import OutboxUnavailable
from bdt_platform.storage.warehouse import WarehouseBusy

RETRIES = 3
FIRST_WAIT_SECONDS = 5.0
#: Each wait is lengthened by up to this share of itself, at random.
JITTER = 0.5
#: What the assets declare (the same count and first wait; Dagster's own jitter).
TRANSIENT_RETRY_POLICY = dg.RetryPolicy(max_retries=RETRIES, delay=FIRST_WAIT_SECONDS,
                                        backoff=dg.Backoff.EXPONENTIAL,
                                        jitter=dg.Jitter.PLUS_MINUS)

#: bdt's own "briefly unavailable" errors.
TRANSIENT_CLASSES: tuple[type[BaseException], ...] = (
    WarehouseBusy, InboxUnavailable, OutboxUnavailable, ConnectionError, TimeoutError)
#: Text in an error from a tool we run (dbt's log of a failed model) that means the same.
TRANSIENT_MARKERS = (
    "could not set lock on file",                       # DuckDB: another process writes
    "conflicting lock is held",                         # DuckDB's wording of the same
    "503 service unavailable", "502 bad gateway", "500 internal server error",
    "504 gateway timeout", "429 too many requests",     # Google APIs over HTTP
    "backenderror", "internalerror", "ratelimitexceeded",  # BigQuery's error reasons
)


def _google_transient(exc: BaseException) -> bool:
    """BigQuery/GCS 429 and 5xx, without importing Google's libraries where they are not used."""
    core = sys.modules.get("google.api_core.exceptions")
    if core is not None and isinstance(exc, (core.ServerError, core.TooManyRequests)):
        return True
    gcsfs_retry = sys.modules.get("gcsfs.retry")
    if gcsfs_retry is not None and isinstance(exc, gcsfs_retry.HttpError):
        code = getattr(exc, "code", None)
        return isinstance(code, int) and (code == 429 or code >= 500)
    return False


def _duckdb_lock(exc: BaseException) -> bool:
    duckdb = sys.modules.get("duckdb")
    return (duckdb is not None and isinstance(exc, duckdb.IOException)
            and "lock" in str(exc).lower())


def transient_cause(exc: BaseException) -> BaseException | None:
    """The transient error in ``exc``'s chain of causes (``exc`` itself first), or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (isinstance(current, TRANSIENT_CLASSES) or _google_transient(current)
                or _duckdb_lock(current)):
            return current
        text = str(current).lower()
        if isinstance(current, dg.Failure) and current.description:
            text += " " + current.description.lower()
        if any(marker in text for marker in TRANSIENT_MARKERS):
            return current
        current = current.__cause__ or current.__context__
    return None


def wait_seconds(attempt: int) -> float:
    """Before retry ``attempt`` (1, 2, ...): 5, 10, 20 s ..., each plus up to half again."""
    base = FIRST_WAIT_SECONDS * 2 ** (attempt - 1)
    return base * (1 + JITTER * random.random())


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


@contextlib.contextmanager
def retried_when_transient(context) -> Iterator[None]:
    """A transient error inside the block becomes Dagster's retry of the whole step (after
    :func:`wait_seconds`, at most ``RETRIES`` times); any other error fails the step at once,
    never retried by the asset's ``RetryPolicy``."""
    try:
        yield
    except dg.DagsterError:
        raise  # Dagster's own control flow (and errors its retry policy never applies to)
    except dg.RetryRequested:
        raise
    except Exception as exc:
        cause = transient_cause(exc)
        if cause is None:
            if isinstance(exc, dg.Failure):
                exc.allow_retries = False
                raise
            raise dg.Failure(description=_one_line(exc), allow_retries=False) from exc
        attempt = context.retry_number + 1
        if attempt > RETRIES:
            raise
        wait = wait_seconds(attempt)
        context.log.warning(f"{_one_line(cause)}; nothing was committed; retry {attempt} of "
                            f"{RETRIES} in {wait:.0f}s")
        # The transient error itself as the cause: the retry event names it.
        raise dg.RetryRequested(max_retries=RETRIES, seconds_to_wait=wait) from cause


def transient_retries(fn: Callable) -> Callable:
    """Run an asset's whole compute function (plain or generator; its first parameter the
    context) inside :func:`retried_when_transient`. Put it under ``@dg.asset``: Dagster reads
    the parameters and their annotations through it (``functools.wraps``)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(context, *args, **kwargs):
            with retried_when_transient(context):
                yield from fn(context, *args, **kwargs)

        return generator

    @functools.wraps(fn)
    def function(context, *args, **kwargs):
        with retried_when_transient(context):
            return fn(context, *args, **kwargs)

    return function
