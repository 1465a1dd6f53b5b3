"""``reports.outreach_forecast``: each scored month's forecast of what its mail lists bring,
per state, beside what they brought (``simulate.py``, ``forecast_inputs.py``).

A forecast uses only what was known before the month: the scores of the version in force
(trained on earlier months), its calibration on its held-out month and the approval rate of the
lists of earlier months. Its budget is the configured one (``mail.budget``, the ``current``
split), so the people it mails are the month's list. The actuals are counted over the model's
label window; they are final (``window_closed``) once case management was read after the
window ended, and only then is ``applied_within_interval`` filled.
"""

import datetime as dt

import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.ml.assets import MODEL_KEY, SCORES_KEY
from bdt_platform.outreach import forecast_inputs as inputs
from bdt_platform.outreach import simulate
from bdt_platform.outreach.config import OutreachConfig, OutreachConfigResource
from bdt_platform.storage.lake import LakeResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["reports", "outreach_forecast"])
TABLE = "reports.outreach_forecast"
CODE_VERSION = source_code_version(__file__, inputs.__file__, simulate.__file__)
APPLICATIONS_KEY = dg.AssetKey(["raw", "applications"])
UPSTREAM = [dg.AssetKey(["outreach", "mail_list"]), SCORES_KEY, MODEL_KEY,
            dg.AssetKey(["staging", "stg_partners__eligibility"]),
            dg.AssetKey(["staging", "stg_casemgmt__applications"]),
            dg.AssetKey(["staging", "stg_casemgmt__clients"]),
            dg.AssetKey(["marts", "fct_enrollment_outcomes"])]
TOTAL = "ALL"

SCHEMA = pa.schema(
    [("month", pa.date32()), ("state", pa.string()), ("split", pa.string()),
     ("model_version", pa.string()), ("allocated", pa.int64()), ("pool", pa.int64()),
     ("pieces", pa.int64()), ("expected_applied", pa.float64()), ("applied_low", pa.int64()),
     ("applied_high", pa.int64()), ("approval_rate", pa.float64()),
     ("expected_approved", pa.float64()), ("approved_low", pa.float64()),
     ("approved_high", pa.float64()), ("calibration_observed", pa.int64()),
     ("calibration_expected", pa.float64()), ("calibration_corrected", pa.bool_()),
     ("listed", pa.int64()), ("actual_applied", pa.int64()), ("actual_approved", pa.int64()),
     ("window_closed", pa.bool_()), ("applied_within_interval", pa.bool_()),
     ("approved_within_interval", pa.bool_())])


def month_forecast(warehouse: Warehouse, lake, config: OutreachConfig, month: dt.date,
                   outcomes: pd.DataFrame, cache: dict) -> pd.DataFrame:
    """The forecast rows of ``month`` (its states and the total) at the configured budgets.
    ``cache``: what months share (the rules' inputs, the feature rows, each version's
    calibration)."""
    states = inputs.scored_states(warehouse, month)
    shared = cache.setdefault("shared", inputs.SharedInputs(warehouse))  # read once
    pools = inputs.pools(warehouse, month, states, config, shared)
    version = inputs.version_in_force(warehouse, month)
    name = version["model_version"]
    if name not in cache:
        if "rows" not in cache:  # the feature rows, read once for every version
            cache["rows"] = inputs.feature_rows(warehouse)
        cache[name] = inputs.held_out_calibration(warehouse, lake, version, config,
                                                  rows=cache["rows"], shared=shared)
    calibration = cache[name]
    rate = inputs.approval_rate(outcomes, month)
    configured = {state: config.budget(state, month) for state in states}
    table, _ = simulate.simulate(pools, sum(configured.values()), "current",
                                 control_share=config.control_share, rate=rate,
                                 calibration=calibration, configured=configured)
    table.insert(0, "month", month)
    table["model_version"] = name
    table["approval_rate"] = rate.rate
    table["calibration_observed"] = calibration.observed
    table["calibration_expected"] = calibration.expected
    table["calibration_corrected"] = calibration.biased
    return table


def with_actuals(table: pd.DataFrame, outcomes: pd.DataFrame, closed: dict[dt.date, bool]
                 ) -> pd.DataFrame:
    """The forecast rows with each month's list: pieces listed, applicants and approvals so
    far, and whether the interval held (once the window is closed)."""
    mine = outcomes[outcomes["month"].isin(set(table["month"]))]
    by_state = mine.groupby(["month", "state"]).agg(listed=("person_token", "size"),
                                                    actual_applied=("applied", "sum"),
                                                    actual_approved=("approved", "sum"))
    total = mine.groupby("month").agg(listed=("person_token", "size"),
                                      actual_applied=("applied", "sum"),
                                      actual_approved=("approved", "sum"))
    total = total.assign(state=TOTAL).set_index("state", append=True)
    actual = pd.concat([by_state, total])
    out = table.merge(actual, left_on=["month", "state"], right_index=True, how="left")
    for column in ("listed", "actual_applied", "actual_approved"):
        out[column] = out[column].fillna(0).astype("int64")
    out["window_closed"] = [bool(closed.get(m, False)) for m in out["month"]]
    applied_ok = (out["applied_low"] <= out["actual_applied"]) & (
        out["actual_applied"] <= out["applied_high"])
    approved_ok = (out["approved_low"] <= out["actual_approved"]) & (
        out["actual_approved"] <= out["approved_high"])
    out["applied_within_interval"] = applied_ok.where(out["window_closed"]).astype("boolean")
    out["approved_within_interval"] = approved_ok.where(
        out["window_closed"] & out["approval_rate"].notna()).astype("boolean")
    return out


def _extracted_at(instance: dg.DagsterInstance) -> dt.datetime | None:
    event = instance.get_latest_materialization_event(APPLICATIONS_KEY)
    if event is None:
        return None
    return dt.datetime.fromtimestamp(event.timestamp, dt.timezone.utc).replace(tzinfo=None)


def compute_forecasts(warehouse: Warehouse, lake, config: OutreachConfig,
                      extracted_at: dt.datetime | None,
                      store: inputs.PoolStore | None = None) -> pd.DataFrame:
    """Every scored month with a mail list: forecast and actual rows (``SCHEMA``). ``store``:
    the pools of earlier forecasts, taken back for months whose rules' inputs did not change
    (pruned to the pools used here once every month is done)."""
    months = inputs.scored_months(warehouse)
    if not months or not warehouse.table_exists("outreach.mail_list"):
        return pd.DataFrame(columns=SCHEMA.names)
    outcomes = inputs.list_outcomes(warehouse, config.label_days)
    listed = set(outcomes["month"])
    cache: dict = {"shared": inputs.SharedInputs(warehouse, store)}
    frames = [month_forecast(warehouse, lake, config, month, outcomes, cache)
              for month in months if month in listed]
    if store is not None:
        store.prune()
    if not frames:
        return pd.DataFrame(columns=SCHEMA.names)
    closed = {m: inputs.window_closed(m, config.label_days, extracted_at) for m in months}
    out = with_actuals(pd.concat(frames, ignore_index=True), outcomes, closed)
    return out[SCHEMA.names]


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=KEY, group_name="reports", deps=UPSTREAM, code_version=CODE_VERSION,
    kinds={"duckdb"}, metadata={"table": TABLE})
@transient_retries
def outreach_forecast(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      lake: LakeResource, outreach: OutreachConfigResource
                      ) -> dg.MaterializeResult:
    """What each scored month's mail lists were expected to bring, and what they brought: one
    row per month x state, plus a total row (`state = 'ALL'`).

    - `pieces`: pieces the configured budget (`allocated`) buys among the `pool` of people the
      list rules keep before the budget cut (a state's budget beyond its pool is not spent)
    - `expected_applied`, `applied_low`..`applied_high`: people expected to apply within
      `model.label_days` of the mailing, with a 95% interval (the sum of the model's scores;
      the Poisson-binomial distribution of the count), from the version in force
      (`model_version`), its scores multiplied by its held-out observed / expected ratio when
      that month shows it mis-calibrated (`calibration_corrected`; `calibration_observed`,
      `calibration_expected`: among the people the rules kept in its held-out month)
    - `expected_approved`, `approved_low`..`approved_high`: of them, those with an application
      approved, at the `approval_rate` of the lists of earlier months
    - `listed`, `actual_applied`, `actual_approved`: the month's list and what its people did
      so far; `window_closed`: the window is over and case management was read after it, so
      the actuals are final; `applied_within_interval`, `approved_within_interval`: whether
      the actual count fell in the interval (empty until the window is closed)

    A month whose list rules read the same inputs as in an earlier forecast (a digest of the
    month's eligibility rows and scores, the approvals, opt-outs and returns up to it, the
    lists before it, the configuration and the code) takes its pool back from the lake
    (`outreach/forecast_pools/`) instead of running the rules again: metadata
    `pools_computed`, `pools_reused`.
    """
    config = outreach.load()
    store = inputs.PoolStore(lake)
    frame = compute_forecasts(warehouse, lake, config, _extracted_at(context.instance), store)
    context.log.info(f"list rules run for {store.made} month(s); {store.taken} month(s) taken "
                     "back from earlier forecasts (the same inputs)")
    warehouse.replace_table(TABLE, pa.Table.from_pandas(frame, schema=SCHEMA,
                                                        preserve_index=False))
    states = frame[frame["state"] != TOTAL]
    judged = states["applied_within_interval"].dropna()
    metadata = {"dagster/row_count": len(frame), "table": TABLE, "code_version": CODE_VERSION,
                "months": int(frame["month"].nunique()) if len(frame) else 0,
                "states_judged": int(len(judged)),
                "states_within_interval": int(judged.astype(bool).sum()),
                "pools_computed": store.made, "pools_reused": store.taken}
    for month, group in states.groupby("month"):
        context.log.info(
            f"{month:%Y-%m}: expected {group['expected_applied'].sum():.1f} applicants in "
            f"{len(group)} state(s), actual {int(group['actual_applied'].sum())}"
            + (f"; {int(group['applied_within_interval'].astype(bool).sum())} of {len(group)} "
               "within their interval" if group["window_closed"].all() else
               " so far (window open)"))
    if len(frame):
        latest = frame[(frame["state"] == TOTAL) & (frame["month"] == frame["month"].max())]
        metadata["latest_month"] = f"{latest['month'].iloc[0]:%Y-%m}"
        metadata["latest_expected_applied"] = float(latest["expected_applied"].iloc[0])
    return dg.MaterializeResult(metadata=metadata)

