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
from bdt_platform.reports.ledger import ledger_query, write_ledgers
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import Warehouse

KEY = dg.AssetKey(["reports", "outcomes"])
TABLE = "reports.outcomes"
CODE_VERSION = source_code_version(__file__, str(Path(__file__).with_name("ledger.py")))
COUNT_COLUMNS = ["people_eligible", "pieces_mailed", "people_nudged", "calls", "applications",
                 "approvals", "denials", "pending"]
HEADLINE = ["pieces_mailed", "people_nudged", "calls", "applications", "approvals",
            "benefit_usd_monthly", "approval_rate"]
UPSTREAM = [dg.AssetKey(["marts", name]) for name in
            ("fct_outreach", "fct_calls", "fct_applications", "fct_enrollment_outcomes")]
UPSTREAM.append(dg.AssetKey(["staging", "stg_partners__eligibility"]))

# Portable SQL (DuckDB and BigQuery): one aggregate per source, joined on state and month.
_SQL = """
with
eligible as (
  select state, month, count(distinct person_token) as people_eligible
  from staging.stg_partners__eligibility where {where} group by state, month),
outreach as (
  select state, month,
    sum(case when outreach_type = 'mail' then 1 else 0 end) as pieces_mailed,
    count(distinct case when outreach_type = 'nudge' and status = 'sent'
                        then person_token end) as people_nudged
  from marts.fct_outreach where {where} group by state, month),
calls as (
  select state, month, count(*) as calls from marts.fct_calls where {where} group by state, month),
applications as (
  select state, month, count(*) as applications
  from marts.fct_applications where {where} group by state, month),
decisions as (
  select state, month,
    sum(case when decision = 'approved' then 1 else 0 end) as approvals,
    sum(case when decision = 'denied' then 1 else 0 end) as denials,
    sum(case when decision = 'pending' then 1 else 0 end) as pending,
    sum(case when decision = 'approved' then monthly_benefit_usd else 0 end) as benefit_usd_monthly
  from marts.fct_enrollment_outcomes where {where} group by state, month),
keys as (
  select state, month from eligible union distinct select state, month from outreach
  union distinct select state, month from calls union distinct select state, month from applications
  union distinct select state, month from decisions)
select k.state, k.month,
  coalesce(e.people_eligible, 0) as people_eligible,
  coalesce(o.pieces_mailed, 0) as pieces_mailed,
  coalesce(o.people_nudged, 0) as people_nudged,
  coalesce(c.calls, 0) as calls,
  coalesce(a.applications, 0) as applications,
  coalesce(d.approvals, 0) as approvals,
  coalesce(d.denials, 0) as denials,
  coalesce(d.pending, 0) as pending,
  coalesce(d.benefit_usd_monthly, 0) as benefit_usd_monthly
from keys k
left join eligible e on e.state = k.state and e.month = k.month
left join outreach o on o.state = k.state and o.month = k.month
left join calls c on c.state = k.state and c.month = k.month
left join applications a on a.state = k.state and a.month = k.month
left join decisions d on d.state = k.state and d.month = k.month
"""


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

    class Config:
        strict = False


def _rate(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    return (numerator / denominator.where(denominator > 0)).astype("float64")


def _where(pairs: list[tuple[str, dt.date]]) -> str:
    states = sorted({s for s, _ in pairs})
    months = sorted({m for _, m in pairs})
    return (f"state in ({', '.join(repr(s) for s in states)}) and month between "
            f"date '{months[0].isoformat()}' and date '{months[-1].isoformat()}'")


def _only(frame: pd.DataFrame, pairs: list[tuple[str, dt.date]]) -> pd.DataFrame:
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    wanted = set(pairs)
    # A boolean Series, not a list: an empty list would select no *columns* of an empty frame.
    keep = pd.Series([(s, m) in wanted for s, m in zip(frame["state"], frame["month"])],
                     index=frame.index, dtype=bool)
    return frame[keep]


def compute_ledger(warehouse: Warehouse, partition_keys: list[str]) -> pd.DataFrame:
    """The records behind every count, for exactly ``partition_keys``."""
    pairs = [parts.split_key(key) for key in partition_keys]
    return _only(warehouse.query(ledger_query(_where(pairs))), pairs)


def compute_outcomes(warehouse: Warehouse, partition_keys: list[str]) -> pd.DataFrame:
    """The report rows for exactly ``partition_keys`` (partitions without data get no row)."""
    pairs = [parts.split_key(key) for key in partition_keys]
    frame = _only(warehouse.query(_SQL.format(where=_where(pairs))), pairs)
    frame = frame.sort_values(["state", "month"]).reset_index(drop=True)
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].astype("int64")
    frame["benefit_usd_monthly"] = frame["benefit_usd_monthly"].astype("float64").round(2)
    frame["approval_rate"] = _rate(frame["approvals"], frame["approvals"] + frame["denials"])
    frame["call_rate"] = _rate(frame["calls"], frame["pieces_mailed"])
    frame["application_rate"] = _rate(frame["applications"], frame["calls"])
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
    check_specs=[dg.AssetCheckSpec("contract", asset=KEY, description=(
        "Counts are non-negative and the approval rate lies between 0 and 1 in every row."))],
    metadata={"table": TABLE},
)
def outcomes_report(context: dg.AssetExecutionContext, warehouse: Warehouse,
                    lake: LakeResource):
    """Outreach outcomes by state and month, the numbers analysts quote.

    - `pieces_mailed`: mail pieces in the partition's current mail-returns file
    - `people_nudged`: distinct people with a `sent` text/call event in the nudges file
    - `calls`: case-management calls started that month in the state
    - `applications`: case-management applications submitted that month in the state
    - `approvals`, `denials`, `pending`: decisions in the partition's current outcomes file
    - `benefit_usd_monthly`: sum of monthly benefits over those approvals
    - `approval_rate`: approvals / (approvals + denials); empty when there are no decisions
    - `call_rate`: calls / pieces_mailed; `application_rate`: applications / calls
    - `people_eligible`: distinct people in the partner's eligibility file (top of the funnel)
    """
    started = time.perf_counter()
    frame = compute_outcomes(warehouse, list(context.partition_keys))
    try:
        OutcomesReportContract.validate(frame, lazy=True)
        check = dg.AssetCheckResult(check_name="contract", passed=True)
    except pa.errors.SchemaErrors as errors:
        raise dg.Failure(f"reports.outcomes breaks its contract:\n{errors.failure_cases.head(20)}")
    table = pyarrow.Table.from_pandas(frame, preserve_index=False)
    covered = [parts.split_key(key) for key in context.partition_keys]
    ledgers = write_ledgers(lake, compute_ledger(warehouse, list(context.partition_keys)),
                            context.run.run_id)
    with warehouse.batch() as batch:
        batch.replace(TABLE, table, covered)
    materializations = []
    for row in frame.itertuples(index=False):
        key = parts.partition_key(row.state, row.month)
        metadata = {"dagster/row_count": 1, "code_version": CODE_VERSION, "table": TABLE,
                    "ledger_path": ledgers.get(key, "")}
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
