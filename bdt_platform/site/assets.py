"""The Dagster asset ``usage/page_views``: the report site's usage rows in the warehouse."""


import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.site import usage
from bdt_platform.site.store import SiteStore
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["usage", "page_views"])
TABLE = "usage.page_views"
SCHEMA = pa.schema([("ts", pa.timestamp("us", tz="UTC")), ("username", pa.string()),
                    ("path", pa.string()), ("metric", pa.string()), ("states", pa.string()),
                    ("rows", pa.int64()), ("ms", pa.float64()), ("kind", pa.string()),
                    ("status", pa.int64())])


def usage_table(site_dir) -> pa.Table:
    """Every usage row of ``site_dir``'s ``site.sqlite`` as an Arrow table (``SCHEMA``)."""
    frame = pd.DataFrame(usage.rows(SiteStore(site_dir)), columns=list(usage.COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    frame["rows"] = frame["rows"].astype("Int64")
    frame["status"] = frame["status"].astype("int64")
    frame["ms"] = frame["ms"].astype("float64")
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


def build_usage_assets(settings) -> list[dg.AssetsDefinition]:
    """``usage/page_views`` for ``settings``' home (its ``site_dir``)."""
    site_dir = settings.site_dir

    @dg.asset(key=KEY, group_name="usage", kinds={"duckdb"}, metadata={"table": TABLE},
              retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL)
    @transient_retries
    def page_views(context: dg.AssetExecutionContext, warehouse: Warehouse
                   ) -> dg.MaterializeResult:
        """Report-site usage: one row per page view, API call or download the site served
        (refused ones too), copied from ``$BDT_HOME/site/site.sqlite`` into
        ``usage.page_views`` (the whole table, replaced).

        - `ts`: when (UTC); `username`: who (empty before sign-in; `embed:<admin>` for an
          embedded link); `path`: the page or endpoint with its query string
        - `metric`: the metric(s) shown; `states`: the states whose numbers were shown;
          `rows`: data rows returned; `ms`: server time; `kind`: page, api, download, embed
          or auth; `status`: the HTTP status
        """
        rows = usage_table(site_dir)
        warehouse.replace_table(TABLE, rows)
        context.log.info(f"{TABLE}: {rows.num_rows} row(s)")
        return dg.MaterializeResult(metadata={"dagster/row_count": rows.num_rows,
                                              "table": TABLE})

    return [page_views]
