"""``outreach.nudge_assignments`` (who is in which nudge campaign, in which arm) and
``outbox/nudge_list`` (the file the text/call vendor receives).

A configured campaign (``outreach.yaml``: states, months, optional program, arms and weights)
reaches, in each state x month it covers, the people on that month's eligibility files who have
a phone, are eligible for a program they are not enrolled in (the campaign's program, when it
names one), never opted out and are not on the do-not-contact list. Each gets the arm
``ids.arm_for(token, campaign id, weights)``: a keyed hash, so the same person keeps the arm on
every rebuild and a person added later moves nobody else.
"""


import datetime as dt

import dagster as dg
import pandas as pd
import pyarrow as pa

from bdt_platform.core import partitions as parts
from bdt_platform.core.partition_events import log_materializations
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.inbox.partners import PartnerRegistryResource
from bdt_platform.outbox.base import Outbox
from bdt_platform.outbox.mail_list import csv_bytes, mail_vendor, push_partitions
from bdt_platform.outreach import ids
from bdt_platform.outreach.config import Campaign, OutreachConfig, OutreachConfigResource
from bdt_platform.outreach.rules import _codes
from bdt_platform.storage.lake import LakeResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["outreach", "nudge_assignments"])
TABLE = "outreach.nudge_assignments"
LIST_KEY = dg.AssetKey(["outbox", "nudge_list"])
NUDGES_FEED = "nudges"
CODE_VERSION = source_code_version(__file__)
COLUMNS = ["campaign_id", "state", "month", "person_token", "arm", "channel"]
FILE_COLUMNS = ["campaign_id", "arm", "channel", "recipient_key", "phone", "language"]
SCHEMA = pa.schema([("campaign_id", pa.string()), ("state", pa.string()),
                    ("month", pa.date32()), ("person_token", pa.string()),
                    ("arm", pa.string()), ("channel", pa.string())])


def audience(rows: pd.DataFrame, campaign: Campaign, opted_out: set[str],
             do_not_contact: dict[str, str]) -> list[str]:
    """The person tokens ``campaign`` reaches among one partition's eligibility ``rows``."""
    people = []
    for token, group in rows.groupby("person_token", sort=True):
        if token in opted_out or token in do_not_contact:
            continue
        if group["phone"].isna().all():
            continue
        eligible = set().union(*map(_codes, group["programs_eligible"]))
        enrolled = set().union(*map(_codes, group["programs_enrolled"]))
        unmet = eligible - enrolled
        if not unmet or (campaign.program and campaign.program not in unmet):
            continue
        people.append(token)
    return people


def assign(state: str, month: dt.date, rows: pd.DataFrame, config: OutreachConfig,
           opted_out: set[str]) -> pd.DataFrame:
    """Every (campaign, person, arm) of one partition."""
    out = []
    for campaign in config.campaigns_for(state, month):
        for token in audience(rows, campaign, opted_out, config.do_not_contact):
            out.append((campaign.id, state, month, token,
                        ids.arm_for(token, campaign.id, campaign.arms), campaign.channel))
    return pd.DataFrame(out, columns=COLUMNS)


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=KEY,
    group_name="outreach",
    deps=[dg.AssetKey(["staging", "stg_partners__eligibility"]),
          dg.AssetKey(["staging", "stg_nudgevendor__nudges"])],
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    code_version=CODE_VERSION,
    kinds={"duckdb"},
    metadata={"table": TABLE},
    check_specs=[dg.AssetCheckSpec("one_arm_per_person", asset=KEY, description=(
        "Nobody is in two campaigns of the same month, and every arm is one of its "
        "campaign's configured arms."))],
)
@transient_retries
def nudge_assignments(context: dg.AssetExecutionContext, warehouse: Warehouse,
                      outreach: OutreachConfigResource):
    """Who is in each configured text/call campaign this month, and in which A/B arm.

    One row per person x campaign: `campaign_id`, `state`, `month`, `person_token`, `arm`
    (from a keyed hash of token and campaign id: stable across rebuilds, and a person added
    later moves nobody) and `channel` (`sms` or `call`). A campaign reaches people with a
    phone, eligible for a program they are not enrolled in (its `program`, when it names one),
    never opted out and not on the do-not-contact list. Metadata per partition: people per
    campaign and arm.
    """
    config = outreach.load()  # a bad campaign config fails here: nothing written or sent
    pairs = [parts.split_key(key) for key in context.partition_keys]
    states = sorted({s for s, _ in pairs})
    months = sorted({m for _, m in pairs})
    rows = warehouse.query(
        "select person_token, phone, programs_eligible, programs_enrolled, state, month "
        "from staging.stg_partners__eligibility where state in ("
        + ", ".join(repr(s) for s in states)
        + f") and month between date '{months[0]}' and date '{months[-1]}'")
    rows["month"] = pd.to_datetime(rows["month"]).dt.date
    optouts = warehouse.query(
        "select person_token, min(month) as month from staging.stg_nudgevendor__nudges "
        "where event_type = 'opted_out' and person_token is not null group by person_token")
    optouts["month"] = pd.to_datetime(optouts["month"]).dt.date
    frames, materializations = [], []
    for state, month in sorted(pairs, key=lambda p: (p[1], p[0])):
        opted = set(optouts.loc[optouts["month"] <= month, "person_token"])
        part = rows[(rows["state"] == state) & (rows["month"] == month)]
        frame = assign(state, month, part, config, opted)
        frames.append(frame)
        if frame.empty:
            continue
        counts = frame.groupby(["campaign_id", "arm"]).size()
        materializations.append(dg.AssetMaterialization(
            asset_key=KEY, partition=parts.partition_key(state, month), metadata={
                "dagster/row_count": len(frame), "table": TABLE, "code_version": CODE_VERSION,
                **{f"{c}/{a}": int(n) for (c, a), n in counts.items()}}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    with warehouse.batch() as batch:
        batch.replace(TABLE, pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False),
                      pairs)
    log_materializations(context, materializations)
    context.log.info(f"{TABLE}: {len(frame)} assignment(s) in {len(materializations)} "
                     "partition(s)")
    twice = int(frame.duplicated(["month", "person_token"]).sum())
    bad_arm = int(sum(arm not in config.campaign(c).weights
                      for c, arm in zip(frame["campaign_id"], frame["arm"])))
    yield dg.AssetCheckResult(
        check_name="one_arm_per_person", asset_key=KEY, passed=not twice and not bad_arm,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"people_in_two_campaigns": twice, "unknown_arms": bad_arm})


def nudge_list_filename(vendor: str, state: str, month: dt.date) -> str:
    return f"{vendor}_{state}_{month:%Y%m}_nudgelist.csv"


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=LIST_KEY,
    group_name="outbox",
    deps=[KEY, dg.AssetKey(["staging", "stg_partners__eligibility"])],
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    code_version=CODE_VERSION,
    kinds={"csv", "sftp"},
    metadata={"file_pattern": "<nudge vendor>_<STATE>_<YYYYMM>_nudgelist.csv"},
    check_specs=[dg.AssetCheckSpec("published", asset=LIST_KEY, description=(
        "Every nudge list of the run reached the outbox whole, once."))],
)
@transient_retries
def nudge_list(context: dg.AssetExecutionContext, warehouse: Warehouse,
               outbox: dg.ResourceParam[Outbox], partners: PartnerRegistryResource,
               lake: LakeResource, outreach: OutreachConfigResource):
    """The month's campaign list as the text/call vendor receives it (the partner registered to
    send the state's nudge events), sent once per state x month: `campaign_id`, `arm`,
    `channel`, `recipient_key` (the person token; the vendor quotes it back), `phone` and
    `language`."""
    outreach.load()  # refuse to send anything under a bad configuration
    registry = partners.registry()

    def files():
        for key in context.partition_keys:
            state, month = parts.split_key(key)
            if not warehouse.table_exists(TABLE):
                raise dg.Failure(f"{TABLE} does not exist: materialize "
                                 "outreach/nudge_assignments first (bdt build)")
            frame = warehouse.query(
                f"select a.campaign_id, a.arm, a.channel, a.person_token as recipient_key, "
                f"min(e.phone) as phone, min(e.language) as language from {TABLE} as a "
                "join staging.stg_partners__eligibility as e on e.person_token = a.person_token "
                "and e.state = a.state and e.month = a.month where a.state = ? and a.month = ? "
                "group by 1, 2, 3, 4 order by 1, 4", [state, month])
            if frame.empty:
                continue
            vendor = mail_vendor(registry, state, NUDGES_FEED)
            yield (key, vendor, nudge_list_filename(vendor, state, month),
                   csv_bytes(frame, FILE_COLUMNS), len(frame), {"code_version": CODE_VERSION})

    yield from push_partitions(context, key=LIST_KEY, check="published", outbox=outbox,
                               lake=lake, files=list(files()))
