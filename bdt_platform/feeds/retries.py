"""Transient failures of a load, retried by Dagster within the same run.

Two things a load needs can be briefly unavailable: the warehouse file, while another process
(``bdt build``'s dbt, a second ingest, the inbox sensor's run) holds DuckDB's write lock, and the
partner SFTP server. A load that meets either stops before anything is committed (its writes are
one transaction, and its inbox files move to ``processed/`` only after the commit), so running it
again is safe: Dagster does so after 5, 10 and 20 s (``RetryRequested``), and the run's log says
why. Anything else (a bug, a bad file) fails at once, as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from bdt_platform.core.inbox_interface import InboxUnavailable
from bdt_platform.storage.warehouse import WarehouseBusy

TRANSIENT = (WarehouseBusy, InboxUnavailable)
RETRIES = 3
FIRST_WAIT_SECONDS = 5.0


@contextlib.contextmanager
def retried_when_transient(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Turn a transient failure inside the block into Dagster's retry of the whole step."""
    try:
        yield
    except TRANSIENT as exc:
        attempt = context.retry_number + 1
        if attempt > RETRIES:
            raise
        wait = FIRST_WAIT_SECONDS * 2 ** (attempt - 1)
        context.log.warning(f"{exc}; nothing was committed; retry {attempt} of {RETRIES} in "
                            f"{wait:.0f}s")
        raise dg.RetryRequested(max_retries=RETRIES, seconds_to_wait=wait) from exc
