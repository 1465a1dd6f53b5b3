"""``reports.ab_readout``: every nudge campaign's A/B result, campaign x arm x outcome metric.

Who is in the experiment is what the nudge vendor reports (``raw.nudges``: each recipient's
``arm`` and their first ``sent`` event, the first contact); their outcomes come from case
management (calls, applications), the states' decisions and the nudge events themselves, counted
when they happen within ``readout.attribution_days`` after first contact. A configured campaign
(``outreach.yaml``) is read with its weights, control arm and primary + guardrail metrics; any
other campaign in the feed as an even split of its arms with ``control`` as control and every
metric. The statistics are ``readout.py``.
"""


import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.outreach import readout as stats
from bdt_platform.outreach.config import OutreachConfig, OutreachConfigResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["reports", "ab_readout"])
TABLE = "reports.ab_readout"
CODE_VERSION = source_code_version(__file__, stats.__file__)
UPSTREAM = [dg.AssetKey(["staging", "stg_nudgevendor__nudges"]),
            dg.AssetKey(["marts", "fct_calls"]), dg.AssetKey(["marts", "fct_applications"]),
            dg.AssetKey(["marts", "fct_enrollment_outcomes"])]


def _utc(series: pd.Series) -> pd.Series:
    values = pd.to_datetime(series, utc=True)
    return values


def _within(first: pd.DataFrame, events: pd.DataFrame, when: str, days: int) -> set:
    """(campaign_id, person_token) pairs with an event within ``days`` after first contact."""
    if events.empty or first.empty:
        return set()
    joined = first.merge(events, on="person_token")
    ok = ((joined[when] >= joined["first_ts"])
          & (joined[when] <= joined["first_ts"] + pd.Timedelta(days=days)))
    return set(zip(joined.loc[ok, "campaign_id"], joined.loc[ok, "person_token"]))


def experiment_people(warehouse: Warehouse, days: int) -> pd.DataFrame:
    """One row per campaign x person: arm, first contact and a 0/1 column per metric."""
    nudges = warehouse.query("select campaign_id, arm, person_token, event_type, event_ts "
                             "from staging.stg_nudgevendor__nudges "
                             "where person_token is not null")
    nudges["event_ts"] = _utc(nudges["event_ts"])
    sent = nudges[nudges["event_type"] == "sent"]
    first = (sent.groupby(["campaign_id", "person_token"], as_index=False)
             .agg(arm=("arm", "first"), first_ts=("event_ts", "min")))
    calls = warehouse.query("select person_token, started_at from marts.fct_calls "
                            "where person_token is not null")
    calls["started_at"] = _utc(calls["started_at"])
    apps = warehouse.query("select application_id, person_token, submitted_at from "
                           "marts.fct_applications where person_token is not null")
    apps["submitted_at"] = _utc(apps["submitted_at"])
    approved_ids = set(warehouse.query("select application_id from marts.fct_enrollment_outcomes "
                                       "where is_approved")["application_id"])
    key = list(zip(first["campaign_id"], first["person_token"]))
    hits = {
        "called": _within(first, calls, "started_at", days),
        "applied": _within(first, apps, "submitted_at", days),
        "approved": _within(first, apps[apps["application_id"].isin(approved_ids)],
                            "submitted_at", days),
    }
    for metric, event in (("replied", "replied"), ("opted_out", "opted_out")):
        own = nudges[nudges["event_type"] == event][["campaign_id", "person_token",
                                                     "event_ts"]]
        joined = first.merge(own, on=["campaign_id", "person_token"])
        ok = joined["event_ts"] <= joined["first_ts"] + pd.Timedelta(days=days)
        hits[metric] = set(zip(joined.loc[ok, "campaign_id"], joined.loc[ok, "person_token"]))
    for metric, found in hits.items():
        first[metric] = [int(k in found) for k in key]
    return first


def compute_readout(people: pd.DataFrame, config: OutreachConfig) -> pd.DataFrame:
    frames = []
    for campaign_id, group in people.groupby("campaign_id", sort=True):
        campaign = config.campaign(campaign_id)
        if campaign is not None:
            weights, control, metrics = campaign.weights, campaign.control_arm, \
                list(campaign.metrics)
        else:
            arms = sorted(set(group["arm"]) | {"control"})
            weights = {arm: 1 / len(arms) for arm in arms}
            control, metrics = "control", list(stats.METRICS)
        frames.append(stats.readout(group, campaign_id=campaign_id, weights=weights,
                                    control_arm=control, metrics=metrics, alpha=config.alpha,
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
def ab_readout(context: dg.AssetExecutionContext, warehouse: Warehouse,
               outreach: OutreachConfigResource) -> dg.MaterializeResult:
    """The A/B result of every text/call campaign: one row per campaign x arm x metric.

    - `n`: people in the arm (a `sent` event from the vendor); `conversions`, `rate`: of them,
      those with the outcome within `attribution_days` after first contact (`called`,
      `applied`, `approved`, `replied`, `opted_out`)
    - `lift_vs_control`: rate minus the control arm's (absolute, in rate points); `ci_low`,
      `ci_high`: its 95% interval (Newcombe); `p_value`: two-sided test of no difference; empty
      on the control arm's own rows
    - `srm_p_value`: chi-square test of the people per arm against the planned split;
      `srm_flag` when below 0.001: the split is broken, and `trustworthy` is false on every row
      of the campaign (read no lift from it)
    - `is_primary`: the campaign's primary metric (the others are guardrails)
    """
    config = outreach.load()
    people = experiment_people(warehouse, config.attribution_days)
    frame = compute_readout(people, config)
    table = pa.Table.from_pandas(frame, schema=stats.READOUT_SCHEMA, preserve_index=False)
    warehouse.replace_table(TABLE, table)  # an unpartitioned report: the whole table
    flagged = sorted(set(frame.loc[frame["srm_flag"].astype(bool), "campaign_id"]))
    primary = frame[frame["is_primary"].astype(bool) & frame["lift_vs_control"].notna()]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(frame), "table": TABLE, "code_version": CODE_VERSION,
        "campaigns": int(frame["campaign_id"].nunique()) if len(frame) else 0,
        "srm_flagged": ", ".join(flagged) or "none",
        "significant_primary_lifts": int((primary["p_value"] < config.alpha).sum()),
        "attribution_days": config.attribution_days})


READOUT_ASSETS = [ab_readout]
