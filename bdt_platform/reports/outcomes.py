"""``reports.outcomes``: the outreach funnel and its results, one row per state x month.

The row for a partition answers: how many mail pieces went out, how many people we nudged,
how many called, how many applied, how many were approved, for how much in monthly benefits,
and the rates between those steps. Each partition's numbers are also recorded as materialization
metadata, so the Dagster UI plots them over time and ``bdt explain`` can compare them.
"""


import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
from pandera.typing import Series

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.core.partition_events import log_materializations
from bdt_platform.metrics import MetricLayer
from bdt_platform.metrics.layer import only_pairs
from bdt_platform.reports.ledger import LEDGER_METRICS, write_ledgers
from bdt_platform.site.links import ReportSiteLinks
from bdt_platform.storage.lake import LakeResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse
from bdt_platform.warehouse.project import DBT_PROJECT_DIR, BundledDbtCliResource

KEY = dg.AssetKey(["reports", "outcomes"])
TABLE = "reports.outcomes"
#: The metric definitions are part of the report's code: a changed definition is a code change
#: that ``bdt explain`` names.
_DEFINITIONS = [DBT_PROJECT_DIR / "models" / "semantic" / name
                for name in ("_metrics.yml", "_semantic_models.yml")]
CODE_VERSION = source_code_version(__file__, str(Path(__file__).with_name("ledger.py")),
                                   *map(str, _DEFINITIONS))
COUNT_COLUMNS = ["people_eligible", "pieces_mailed", "pieces_returned", "people_nudged", "calls",
                 "applications", "approvals", "denials", "pending", "decisions"]
#: Every column after state and month, each a metric of the metric layer (dbt_project/models/
#: semantic/_metrics.yml): the report holds their values, it does not define them.
REPORT_METRICS = [*COUNT_COLUMNS, "benefit_usd_monthly", "mail_cost_usd", "approval_rate",
                  "call_rate", "application_rate", "mail_return_rate",
                  "enrollments_per_1000_mailed", "cost_per_enrollment",
                  "days_mailing_to_application"]
HEADLINE = ["pieces_mailed", "people_nudged", "calls", "applications", "approvals",
            "benefit_usd_monthly", "approval_rate"]
UPSTREAM = [dg.AssetKey(["marts", name]) for name in
            ("fct_outreach", "fct_calls", "fct_applications", "fct_enrollment_outcomes")]
UPSTREAM.append(dg.AssetKey(["staging", "stg_partners__eligibility"]))
# What the metric layer reads (dbt_project/models/semantic/).
UPSTREAM += [dg.AssetKey(["semantic", name])
             for name in ("sem_eligibility", "sem_outreach", "sem_applications")]

class OutcomesReportContract(pa.DataFrameModel):
    """What every row of ``reports.outcomes`` must satisfy before analysts see it."""

    state: Series[str] = pa.Field(isin=list(parts.STATES))
    people_eligible: Series[int] = pa.Field(ge=0)
    pieces_mailed: Series[int] = pa.Field(ge=0)
    people_nudged: Series[int] = pa.Field(ge=0)
    calls: Series[int] = pa.Field(ge=0)
    applications: Series[int] = pa.Field(ge=0)
    approvals: Series[int] = pa.Field(ge=0)
    denials: Series[int] = pa.Field(ge=0)
    pending: Series[int] = pa.Field(ge=0)
    benefit_usd_monthly: Series[float] = pa.Field(ge=0)
    approval_rate: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    call_rate: Series[float] = pa.Field(ge=0, nullable=True)
    application_rate: Series[float] = pa.Field(ge=0, nullable=True)
    mail_return_rate: Series[float] = pa.Field(ge=0, le=1, nullable=True)
    enrollments_per_1000_mailed: Series[float] = pa.Field(ge=0, nullable=True)
    cost_per_enrollment: Series[float] = pa.Field(ge=0, nullable=True)
    days_mailing_to_application: Series[float] = pa.Field(ge=0, nullable=True)

    class Config:
        strict = False


def _where(pairs: list[tuple[str, dt.date]]) -> str:
    """SQL selecting the rows of a report table for ``pairs``' states and month range."""
    states = sorted({s for s, _ in pairs})
    months = sorted({m for _, m in pairs})
    return (f"state in ({', '.join(repr(s) for s in states)}) and month between "
            f"date '{months[0].isoformat()}' and date '{months[-1].isoformat()}'")


_only = only_pairs  # the rows of a frame for exactly the partitions asked


def compute_ledger(layer: MetricLayer, partition_keys: list[str]) -> pd.DataFrame:
    """The records behind every count, for exactly ``partition_keys`` (the metric layer's
    drill-down rows of each ledger metric)."""
    pairs = [parts.split_key(key) for key in partition_keys]
    rows = layer.record_rows(LEDGER_METRICS, pairs)
    return rows[["state", "month", "metric", "record_id", "amount"]]


def compute_outcomes(warehouse: Warehouse, partition_keys: list[str],
                     project_dir: Path = DBT_PROJECT_DIR) -> pd.DataFrame:
    """The report rows for exactly ``partition_keys`` (partitions without data get no row),
    every value from the metric layer."""
    return outcomes_from_layer(MetricLayer.for_warehouse(warehouse, project_dir), partition_keys)


def outcomes_from_layer(layer: MetricLayer, partition_keys: list[str]) -> pd.DataFrame:
    pairs = [parts.split_key(key) for key in partition_keys]
    if not pairs:
        return pd.DataFrame(columns=["state", "month", *REPORT_METRICS])
    states = sorted({s for s, _ in pairs}, key=parts.STATES.index)
    months = sorted({m for _, m in pairs})
    frame = layer.query(REPORT_METRICS, by=("state", "month"), states=states,
                        months=(months[0], months[-1]))
    frame = _only(frame, pairs).sort_values(["state", "month"]).reset_index(drop=True)
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].fillna(0).round().astype("int64")
    for column in ("benefit_usd_monthly", "mail_cost_usd"):
        frame[column] = frame[column].fillna(0.0).astype("float64").round(2)
    return frame


@dg.asset(
    key=KEY,
    group_name="reports",
    deps=UPSTREAM,
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    code_version=CODE_VERSION,
    kinds={"duckdb"},
    retry_policy=TRANSIENT_RETRY_POLICY,
    pool=WAREHOUSE_POOL,
    check_specs=[dg.AssetCheckSpec("contract", asset=KEY, description=(
        "Counts are non-negative and the approval rate lies between 0 and 1 in every row."))],
    metadata={"table": TABLE},
)
@transient_retries
def outcomes_report(context: dg.AssetExecutionContext, warehouse: Warehouse,
                    lake: LakeResource, dbt: BundledDbtCliResource,
                    report_site: ReportSiteLinks):
    """Outreach outcomes by state and month, the numbers analysts quote.

    - `pieces_mailed`: mail pieces in the partition's current mail-returns file
    - `people_nudged`: distinct people with a `sent` text/call event in the nudges file
    - `calls`: case-management calls started that month in the state
    - `applications`: case-management applications submitted that month in the state
    - `approvals`, `denials`, `pending`: decisions in the partition's current outcomes file
    - `benefit_usd_monthly`: sum of monthly benefits over those approvals
    - `approval_rate`: approvals / (approvals + denials); empty when there are no decisions
    - `call_rate`: calls / pieces_mailed; `application_rate`: applications / calls
    - `people_eligible`: distinct people on the partners' eligibility files (top of the funnel)
    - `pieces_returned`, `mail_return_rate`: pieces that came back, and their share
    - `decisions`: approvals + denials; `mail_cost_usd`: pieces x the configured cost per piece
    - `enrollments_per_1000_mailed`, `cost_per_enrollment`: approvals per 1,000 pieces; mail
      cost per approval
    - `days_mailing_to_application`: median days from the month's first mailing to an application

    Every column is a metric of the metric layer (dbt's semantic layer, `bdt metrics list`): the
    report stores their values per partition; the definitions live in one place.
    """
    started = time.perf_counter()
    layer = MetricLayer.for_warehouse(warehouse, Path(dbt.project_dir))
    frame = outcomes_from_layer(layer, list(context.partition_keys))
    try:
        OutcomesReportContract.validate(frame, lazy=True)
        check = dg.AssetCheckResult(check_name="contract", passed=True)
    except pa.errors.SchemaErrors as errors:
        raise dg.Failure(f"reports.outcomes breaks its contract:\n{errors.failure_cases.head(20)}")
    table = pyarrow.Table.from_pandas(frame, preserve_index=False)
    covered = [parts.split_key(key) for key in context.partition_keys]
    ledgers = write_ledgers(lake, compute_ledger(layer, list(context.partition_keys)),
                            context.run.run_id)
    with warehouse.batch() as batch:
        batch.replace(TABLE, table, covered)
    # Readers in other processes (the report site) read a copy; publish the new numbers.
    publish = getattr(warehouse, "publish_snapshot", None)
    if publish is not None and (snapshot := publish()):
        context.log.info(f"published the warehouse snapshot for readers: {snapshot}")
    materializations = []
    for row in frame.itertuples(index=False):
        key = parts.partition_key(row.state, row.month)
        metadata = {"dagster/row_count": 1, "code_version": CODE_VERSION, "table": TABLE,
                    "ledger_path": ledgers.get(key, ""),
                    # The partition's page on the report site (why did it change).
                    "report_page": dg.MetadataValue.url(report_site.explain(row.state,
                                                                            row.month))}
        for name in HEADLINE:
            value = getattr(row, name)
            metadata[name] = (dg.MetadataValue.null() if pd.isna(value)
                              else dg.MetadataValue.float(float(value)) if isinstance(value, float)
                              else dg.MetadataValue.int(int(value)))
        materializations.append(dg.AssetMaterialization(asset_key=KEY, partition=key,
                                                        metadata=metadata))
    log_materializations(context, materializations)
    context.log.info(f"reports.outcomes: {len(frame)} row(s) for {len(covered)} partition(s) in "
                     f"{time.perf_counter() - started:.2f}s")
    yield check


REPORT_ASSETS = [outcomes_report]
