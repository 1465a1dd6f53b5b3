"""``lake/outcomes_report``: the outcomes report as Parquet files in the lake, for notebooks.

The same rows as ``reports.outcomes``, one Parquet object per state x month partition, written by
the lake IO manager (``lake_io_manager``)::

    <lake>/outcomes_report/month=2024-03/state=PA.parquet

so an analyst reads a state's year without warehouse access::

    pd.read_parquet("gs://<bucket>/lake/outcomes_report/month=2024-03/state=PA.parquet")

A partition of the run without report rows gets an empty file (with the columns), so a re-run
replaces what was there before.
"""

import dagster as dg
import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.reports.outcomes import CODE_VERSION, KEY as OUTCOMES_KEY, TABLE, _only, _where
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["lake", "outcomes_report"])


@dg.asset(
    key=KEY,
    group_name="reports",
    deps=[OUTCOMES_KEY],
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    io_manager_key="lake_io_manager",
    code_version=CODE_VERSION,
    kinds={"parquet"},
    # Reads the warehouse (DuckDB: no other process may hold it meanwhile), writes the lake.
    retry_policy=TRANSIENT_RETRY_POLICY,
    pool=WAREHOUSE_POOL,
    metadata={"source_table": TABLE,
              "layout": "<lake>/outcomes_report/month=YYYY-MM/state=XX.parquet"},
)
@transient_retries
def outcomes_report_parquet(context: dg.AssetExecutionContext,
                            warehouse: Warehouse) -> pd.DataFrame:
    """The report as Parquet files in the lake, for analysts' notebooks: the rows of
    `reports.outcomes` for each state x month partition, same columns and meanings."""
    pairs = [parts.split_key(key) for key in context.partition_keys]
    if not warehouse.table_exists(TABLE):
        raise dg.Failure(f"{TABLE} does not exist yet: materialize reports/outcomes first")
    frame = _only(warehouse.query(f"select * from {TABLE} where {_where(pairs)}"), pairs)
    frame = frame.sort_values(["state", "month"]).reset_index(drop=True)
    context.log.info(f"{KEY.to_user_string()}: {len(frame)} row(s) for {len(pairs)} partition(s)")
    return frame


EXPORT_ASSETS = [outcomes_report_parquet]
