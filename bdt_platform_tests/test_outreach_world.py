"""Outreach on one small built world (two states x two months): the mail list keeps every rule
when checked against the raw tables, arms are stable and balanced, the vendor files are sent
once, and a rebuild with nothing new gives the same lists, ids, ranks and arms."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.outreach import ids
from bdt_platform.outreach.config import load_config
from bdt_platform.synthetic import generate

from .conftest import TEST_PII_KEY, ingest_and_build, make_settings

STATES = ["MA", "ME"]
MONTHS = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions

    home = tmp_path_factory.mktemp("outreach") / "home"
    settings = make_settings(home)
    generate(home / "inbox", settings.casemgmt_sqlite_path, states=STATES, months=MONTHS,
             scale=0.5, seed=11, pii_key=TEST_PII_KEY)
    defs = build_definitions(settings)
    instance = instance_for(settings)
    ingested, built, lines = ingest_and_build(defs, instance)
    assert ingested.exit_code == 0 and built.exit_code == 0, lines
    yield settings, defs, instance
    instance.dispose()


def q(defs, sql: str) -> pd.DataFrame:
    frame = defs.resources["warehouse"].query(sql)
    if "month" in frame:
        frame["month"] = pd.to_datetime(frame["month"]).dt.date
    return frame


def _codes(text) -> set[str]:
    return {c for c in str(text or "").upper().split(";") if c} if not pd.isna(text) else set()


def test_the_mail_list_keeps_every_rule_against_the_raw_tables(world):
    settings, defs, _ = world
    config = load_config()
    mail = q(defs, "select * from outreach.mail_list")
    assert sorted(set(zip(mail["state"], mail["month"]))) == sorted(
        (s, m) for s in STATES for m in MONTHS)
    raw = q(defs, "select person_token, state, month, programs_eligible, programs_enrolled "
                  "from raw.eligibility")
    for (state, month), part in mail.groupby(["state", "month"]):
        # No duplicate person, unique ids, budget respected, ranks 1..n.
        assert part["person_token"].is_unique and part["mail_piece_id"].is_unique
        assert len(part) <= config.budget(state, month)
        assert sorted(part["rank"]) == list(range(1, len(part) + 1))
        assert all(i == ids.mail_piece_id(state, month, t)
                   for i, t in zip(part["mail_piece_id"], part["person_token"]))
        rows = raw[(raw["state"] == state) & (raw["month"] == month)]
        # Everyone is on the month's eligibility files, with a program still to win.
        for token in part["person_token"]:
            mine = rows[rows["person_token"] == token]
            assert len(mine) >= 1
            eligible = set().union(*map(_codes, mine["programs_eligible"]))
            enrolled = set().union(*map(_codes, mine["programs_enrolled"]))
            assert eligible - enrolled
        # The random control is its share of the budget (or everyone, on a short list).
        control = int((part["arm"] == "random_control").sum())
        assert control == min(len(part), round(config.budget(state, month)
                                               * config.control_share)) > 0
    # Nobody mailed within 90 days: nobody on both January's and February's lists.
    for state in STATES:
        jan = set(mail[(mail["state"] == state) & (mail["month"] == MONTHS[0])]["person_token"])
        feb = set(mail[(mail["state"] == state) & (mail["month"] == MONTHS[1])]["person_token"])
        assert jan and feb and not jan & feb
    # No opt-out (from the nudge events up to the month) is mailed.
    optouts = q(defs, "select recipient_key as person_token, month from raw.nudges "
                      "where event_type = 'opted_out'")
    for month in MONTHS:
        opted = set(optouts[optouts["month"] <= month]["person_token"])
        assert not opted & set(mail[mail["month"] == month]["person_token"])


def test_exclusions_are_counted_by_reason_in_the_metadata(world):
    _, defs, instance = world
    from bdt_platform.outreach.mail_list import KEY

    mail = q(defs, "select state, month, count(*) as n from outreach.mail_list group by 1, 2")
    for row in mail.itertuples():
        key = f"{row.month.isoformat()}|{row.state}"
        event = instance.get_latest_materialization_event(KEY)
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=KEY, asset_partitions=[key]), limit=1).records
        metadata = records[0].asset_materialization.metadata
        counted = sum(metadata[f"excluded_{r}"].value for r in (
            "enrolled_in_everything", "do_not_contact", "opted_out", "undeliverable_address",
            "mailed_recently", "over_budget"))
        assert metadata["dagster/row_count"].value == row.n
        assert metadata["candidates"].value == row.n + counted
        assert event is not None
    feb = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=KEY, asset_partitions=["2024-02-01|MA"]), limit=1).records
    assert feb[0].asset_materialization.metadata["excluded_mailed_recently"].value > 0


def test_nudge_arms_are_the_keyed_hash_and_balanced(world):
    from scipy.stats import chisquare

    _, defs, _ = world
    config = load_config()
    assigned = q(defs, "select * from outreach.nudge_assignments")
    assert set(assigned["campaign_id"]) == {"snap-text-2024q1", "medicaid-call-2024q1"}
    for row in assigned.itertuples():
        campaign = config.campaign(row.campaign_id)
        assert row.arm == ids.arm_for(row.person_token, row.campaign_id, campaign.arms)
        assert campaign.covers(row.state, row.month)
    counts = assigned.groupby("campaign_id")["arm"].value_counts().unstack()
    for campaign_id, row in counts.iterrows():
        assert chisquare([row["control"], row["treatment"]]).pvalue > 0.001
    assert not assigned.duplicated(["campaign_id", "month", "person_token"]).any()


def test_the_readout_covers_every_campaign_of_the_nudge_feed(world):
    _, defs, _ = world
    readout = q(defs, "select * from reports.ab_readout")
    campaigns = set(q(defs, "select distinct campaign_id from raw.nudges")["campaign_id"])
    assert set(readout["campaign_id"]) == campaigns
    treated = readout[readout["arm"] == "treatment"]
    assert treated["lift_vs_control"].notna().all()
    assert (treated["ci_low"] <= treated["lift_vs_control"]).all()
    assert (treated["lift_vs_control"] <= treated["ci_high"]).all()
    assert readout[readout["arm"] == "control"]["lift_vs_control"].isna().all()
    assert (readout["n"] >= readout["conversions"]).all()
    assert not readout["srm_flag"].any()  # the generator splits 50/50


def test_vendor_files_are_sent_once_and_a_rebuild_changes_nothing(world):
    settings, defs, instance = world
    from bdt_platform.warehouse.build import build

    outbox = settings.outbox
    files = sorted(p.relative_to(outbox) for p in outbox.rglob("*.csv"))
    assert {str(f) for f in files} >= {"mailvendor/mailvendor_MA_202401_maillist.csv",
                                      "nudgevendor/nudgevendor_MA_202401_nudgelist.csv"}
    lake = settings.home / "lake" / "outbox" / "mailvendor"
    assert (lake / "mailvendor_MA_202401_maillist.csv.sent.json").exists()
    before = {f: (outbox / f).stat().st_mtime_ns for f in files}
    data = {f: (outbox / f).read_bytes() for f in files}
    tables = {t: q(defs, f"select * from {t} order by all") for t in
              ("outreach.mail_list", "outreach.nudge_assignments")}
    # Forced: nothing changed, so an ordinary build would skip every partition (and run
    # nothing); a forced one builds and exports every partition again, and must send nothing.
    result = build(defs, instance, defs.resources["warehouse"], echo=lambda line: None,
                   force=True)
    assert result.exit_code == 0 and result.runs
    for table, frame in tables.items():
        pd.testing.assert_frame_equal(q(defs, f"select * from {table} order by all"), frame)
    after = sorted(p.relative_to(outbox) for p in outbox.rglob("*.csv"))
    assert after == files
    assert {f: (outbox / f).stat().st_mtime_ns for f in files} == before  # nothing re-sent
    assert {f: (outbox / f).read_bytes() for f in files} == data
