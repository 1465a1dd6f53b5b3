"""``reports.mail_list_readout``: the model's lift over random targeting, per list month.

Each month's mail lists are an experiment of their own: the people mailed by rank (``arm =
model``) against the lottery share mailed whatever their score (``arm = random_control``, the
control). Their outcomes come from case management and the states' decisions, counted within
``readout.attribution_days`` after the month's mailing (the first of the month); the statistics
are ``readout.readout``'s (the campaign id is ``mail-list-<YYYY-MM>``; planned split:
``mail.control_share``).
"""

import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.outreach import readout as stats
from bdt_platform.outreach.config import OutreachConfig, OutreachConfigResource
from bdt_platform.outreach.rules import ARM_CONTROL, ARM_MODEL
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["reports", "mail_list_readout"])
TABLE = "reports.mail_list_readout"
CODE_VERSION = source_code_version(__file__, stats.__file__)
UPSTREAM = [dg.AssetKey(["outreach", "mail_list"]), dg.AssetKey(["marts", "fct_calls"]),
            dg.AssetKey(["marts", "fct_applications"]),
            dg.AssetKey(["marts", "fct_enrollment_outcomes"])]
METRICS = ["applied", "approved", "called"]


def _within(people: pd.DataFrame, events: pd.DataFrame, when: str, days: int) -> set:
    if people.empty or events.empty:
        return set()
    joined = people[["month", "person_token", "start"]].merge(events, on="person_token")
    ok = ((joined[when] >= joined["start"])
          & (joined[when] < joined["start"] + pd.Timedelta(days=days)))
    return set(zip(joined.loc[ok, "month"], joined.loc[ok, "person_token"]))


def mail_list_people(warehouse: Warehouse, days: int) -> pd.DataFrame:
    """One row per mailed person x month: arm and a 0/1 column per metric."""
    people = warehouse.query("select month, person_token, arm from outreach.mail_list")
    people["month"] = pd.to_datetime(people["month"]).dt.date
    people["start"] = pd.to_datetime(people["month"]).dt.tz_localize("UTC")
    calls = warehouse.query("select person_token, started_at from marts.fct_calls "
                            "where person_token is not null")
    calls["started_at"] = pd.to_datetime(calls["started_at"], utc=True)
    apps = warehouse.query("select application_id, person_token, submitted_at from "
                           "marts.fct_applications where person_token is not null")
    apps["submitted_at"] = pd.to_datetime(apps["submitted_at"], utc=True)
    approved = set(warehouse.query("select application_id from marts.fct_enrollment_outcomes "
                                   "where is_approved")["application_id"])
    hits = {"called": _within(people, calls, "started_at", days),
            "applied": _within(people, apps, "submitted_at", days),
            "approved": _within(people, apps[apps["application_id"].isin(approved)],
                                "submitted_at", days)}
    key = list(zip(people["month"], people["person_token"]))
    for metric, found in hits.items():
        people[metric] = [int(k in found) for k in key]
    return people.drop(columns="start")


def compute_lift_readout(people: pd.DataFrame, config: OutreachConfig) -> pd.DataFrame:
    """The readout of every month whose lists have both arms."""
    weights = {ARM_MODEL: 1.0 - config.control_share, ARM_CONTROL: config.control_share}
    frames = []
    for month, group in people.groupby("month", sort=True):
        if set(group["arm"]) != set(weights):
            continue
        frames.append(stats.readout(group, campaign_id=f"mail-list-{month:%Y-%m}",
                                    weights=weights, control_arm=ARM_CONTROL,
                                    metrics=METRICS, alpha=config.alpha,
                                    srm_alpha=config.srm_alpha,
                                    attribution_days=config.attribution_days))
    if not frames:
        return pd.DataFrame(columns=stats.READOUT_COLUMNS)
    return pd.concat(frames, ignore_index=True)


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=KEY, group_name="reports", deps=UPSTREAM, code_version=CODE_VERSION,
    kinds={"duckdb"}, metadata={"table": TABLE})
@transient_retries
def mail_list_readout(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      outreach: OutreachConfigResource) -> dg.MaterializeResult:
    """The response model's lift over random targeting: one row per list month x arm x metric.

    - `campaign_id`: `mail-list-<YYYY-MM>`, every state's list of that month; `arm`: `model`
      (mailed by rank) or `random_control` (the lottery share, mailed whatever the score; the
      control)
    - `n`: people mailed in the arm; `conversions`, `rate`: of them, those who `applied`, were
      `approved` or `called` within `attribution_days` after the first of the month
    - `lift_vs_control`: the model arm's rate minus random targeting's (absolute); `ci_low`,
      `ci_high`: its 95% interval; `p_value`; `srm_p_value` against `mail.control_share`
    """
    config = outreach.load()
    frame = compute_lift_readout(mail_list_people(warehouse, config.attribution_days), config)
    warehouse.replace_table(TABLE, pa.Table.from_pandas(frame, schema=stats.READOUT_SCHEMA,
                                                        preserve_index=False))
    primary = frame[(frame["arm"] == ARM_MODEL) & (frame["metric"] == "applied")]
    metadata = {"dagster/row_count": len(frame), "table": TABLE, "code_version": CODE_VERSION,
                "months": int(frame["campaign_id"].nunique()) if len(frame) else 0}
    if len(primary):
        metadata["latest_applied_lift"] = float(primary["lift_vs_control"].iloc[-1])
    return dg.MaterializeResult(metadata=metadata)
