"""The records behind each number of ``reports.outcomes``, kept per materialization.

For every report partition a run writes, the ledger lists which record stands behind each
count (``pieces_mailed`` -> mail piece ids, ``approvals`` -> application:program, ...) and its
amount. It is stored in the lake next to the run that produced the numbers, so ``bdt explain``
can say exactly which records entered or left a count between two materializations - by
record id, never by SSN or name (people are person tokens).
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bdt_platform.core import partitions as parts
from bdt_platform.storage.lake import LakeResource

#: The metrics whose records the ledger keeps (the metric layer's drill-down rows of each:
#: ``MetricLayer.record_rows``): ``pieces_mailed`` -> mail piece ids, ``people_nudged`` -> person
#: tokens, ``calls`` -> call ids, ``applications`` -> application ids, ``approvals`` / ``denials``
#: / ``benefit_usd_monthly`` -> application:program.
LEDGER_METRICS = ["pieces_mailed", "people_nudged", "calls", "applications", "approvals",
                  "denials", "benefit_usd_monthly"]


def ledger_path(state: str, month, run_id: str) -> str:
    return f"reports/outcomes/ledger/month={month:%Y-%m}/state={state}/{run_id}.parquet"


def write_ledgers(lake: LakeResource, frame: pd.DataFrame, run_id: str) -> dict[str, str]:
    """One Parquet file per partition; returns ``partition key -> lake path``.

    The frame goes to Arrow once; each partition's file is a zero-copy slice of it (rows keep
    their order within a partition)."""
    if frame.empty:
        return {}
    ordered = frame.sort_values(["state", "month"], kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(ordered[["metric", "record_id", "amount"]],
                                 preserve_index=False)
    sizes = ordered.groupby(["state", "month"], sort=False).size()
    paths, start = {}, 0
    for (state, month), rows in sizes.items():
        month = pd.Timestamp(month).date()
        path = ledger_path(state, month, run_id)
        buffer = io.BytesIO()
        pq.write_table(table.slice(start, rows), buffer)
        start += rows
        target = lake.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(buffer.getvalue())
        paths[parts.partition_key(state, month)] = path
    return paths


def read_ledger(lake: LakeResource, path: str | None) -> pd.DataFrame:
    if not path:
        return pd.DataFrame(columns=["metric", "record_id", "amount"])
    return pq.read_table(io.BytesIO(lake.path(path).read_bytes())).to_pandas()
