"""Recording a run's per-partition materializations as one batch.

An asset that loads many partitions in one run (a single-run backfill) records one
``AssetMaterialization`` per partition it actually loaded, with that partition's own metadata
(file, checksum, rows: what ``bdt explain`` reads). ``context.log_event`` stores each one on its
own: two transactions and a rewrite of the asset's latest-materialization row per event.

Dagster already stores the per-partition events of a range *output* in batches when
``DAGSTER_EVENT_BATCH_SIZE`` is set (the local env sets it, see ``resources``), but a range
output materializes every partition of the run, including those whose file was quarantined.
``log_materializations`` gives logged events the same batch marks, so the instance stores them
like a range output's (``EventLogStorage.store_event_batch``), and nothing else changes: the
events, their order and what the run's result reports are those of ``log_event``. Without batch
writing enabled Dagster ignores the marks and stores each event at once; if its step context no
longer has the internals used here, this falls back to ``log_event``.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg


def log_materializations(context: dg.AssetExecutionContext,
                         materializations: Sequence[dg.AssetMaterialization]) -> None:
    """Record ``materializations`` in order, as one batch (see the module docstring)."""
    if not materializations:
        return
    batch = _batch_marks(context, len(materializations))
    if batch is None:
        for materialization in materializations:
            context.log_event(materialization)
        return
    op_context, step_context, marks = batch
    for materialization, mark in zip(materializations, marks):
        # Creating the event logs it (stored when its batch ends); the step yields it later,
        # exactly as ``log_event`` does.
        op_context._events.append(  # noqa: SLF001
            dg.DagsterEvent.asset_materialization(step_context, materialization, mark))


def _batch_marks(context, count: int):
    """``(op context, step context, batch marks)``, or None to log one by one."""
    from dagster._core.events import DagsterEventBatchMetadata, generate_event_batch_id

    op_context = context.op_execution_context
    step_context = getattr(op_context, "_step_execution_context", None)
    if step_context is None or not isinstance(getattr(op_context, "_events", None), list):
        return None
    batch_id = generate_event_batch_id()
    marks = [DagsterEventBatchMetadata(batch_id, index == count - 1) for index in range(count)]
    return op_context, step_context, marks
