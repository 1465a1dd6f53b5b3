"""The mail-list rules, one by one, on tiny frames (no warehouse); the configuration's refusals;
the keyed-hash arms; and the readout's statistics (coverage of the planted lift, SRM)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from bdt_platform.outreach import ids, readout, rules
from bdt_platform.outreach.config import OutreachConfigError, load_config, parse_config

MAR = dt.date(2024, 3, 1)


def tok(i: int) -> str:
    return f"tok_{i:032x}"


def row(i: int, partner="agency", eligible="SNAP", enrolled="", address="1 Main St", rid=None):
    return {"person_token": tok(i), "record_id": rid or f"R{i}", "_partner": partner,
            "programs_eligible": eligible, "programs_enrolled": enrolled,
            "address_line1": address, "address_line2": None, "city": "Town", "zip": "02101",
            "language": "en"}


def select(rows, **kw):
    kw.setdefault("budget", 100)
    kw.setdefault("control_share", 0.0)
    return rules.select_mail_list("MA", MAR, pd.DataFrame(rows), **kw)


def test_each_rule_excludes_and_counts_its_people():
    people = [row(1), row(2, eligible="SNAP", enrolled="SNAP"), row(3), row(4), row(5), row(6),
              row(7, address="9 New Rd")]
    enrolled = pd.DataFrame({"person_token": [tok(3)], "program": ["SNAP"]})
    history = pd.DataFrame({
        "person_token": [tok(5), tok(6), tok(7), tok(1)],
        "month": [dt.date(2024, 1, 1), dt.date(2023, 11, 1), dt.date(2023, 10, 1),
                  dt.date(2023, 10, 1)],
        "mail_piece_id": ["P5", "P6", "P7", "P1"],
        "address_hash": [rules.address_hash("1 Main St", None, "Town", "02101")] * 4})
    returns = pd.DataFrame({"mail_piece_id": ["P6", "P7", "P1"],
                            "mailed_date": [dt.date(2023, 11, 3)] * 2 + [dt.date(2023, 10, 2)],
                            "status": ["undeliverable", "returned", "delivered"],
                            "status_date": [dt.date(2023, 11, 20)] * 3})
    result = select(people + [row(8)], enrolled=enrolled, history=history, returns=returns,
                    opted_out={tok(8)}, do_not_contact={tok(4): "asked"})
    assert result.exclusions == {"enrolled_in_everything": 2, "do_not_contact": 1,
                                 "opted_out": 1, "undeliverable_address": 1,
                                 "mailed_recently": 1, "over_budget": 0}
    # 1: mailed 152 days ago, delivered; 7: returned, but a newer address arrived.
    assert sorted(result.rows["person_token"]) == [tok(1), tok(7)]


def test_partners_rows_of_one_person_become_one_piece_with_the_union_of_programs():
    result = select([row(1, partner="agency", eligible="SNAP", enrolled=""),
                     row(1, partner="community", eligible="WIC;SNAP", enrolled="SNAP")])
    assert result.duplicate_rows == 1 and len(result.rows) == 1
    assert result.rows["programs_to_offer"].iloc[0] == "WIC"
    assert result.rows["source_partner"].iloc[0] == "agency"


def test_budget_cuts_by_rank_and_the_control_is_a_lottery_share():
    people = [row(i, eligible="SNAP;WIC" if i % 3 == 0 else "SNAP") for i in range(1, 201)]
    scores = pd.DataFrame({"person_token": [tok(i) for i in range(1, 201)],
                           "score": [i / 200 for i in range(1, 201)]})
    result = select(people, budget=50, control_share=0.2, scores=scores, model_version="m1")
    out = result.rows
    assert len(out) == 50 and result.exclusions["over_budget"] == 150
    assert (out["arm"] == "random_control").sum() == 10
    model = out[out["arm"] == "model"]
    control = set(out.loc[out["arm"] == "random_control", "person_token"])
    best = [tok(i) for i in range(200, 0, -1) if tok(i) not in control][:40]
    assert sorted(model["person_token"]) == sorted(best)  # the best scores outside the lottery
    assert min(int(t[4:], 16) for t in control) < 160  # the lottery reaches low scores too
    assert list(out["rank"]) == list(range(1, 51))
    assert out["score"].is_monotonic_decreasing and set(out["model_version"]) == {"m1"}
    again = select(list(reversed(people)), budget=50, control_share=0.2, scores=scores,
                   model_version="m1")
    pd.testing.assert_frame_equal(again.rows, out)  # same inputs, same list, ids, ranks
    assert select(people, budget=0, control_share=0.2).rows.empty


def test_arms_are_stable_weighted_and_a_new_person_moves_nobody():
    arms = (("control", 0.2), ("a", 0.3), ("b", 0.5))
    first = {tok(i): ids.arm_for(tok(i), "camp", arms) for i in range(20_000)}
    later = {tok(i): ids.arm_for(tok(i), "camp", arms) for i in range(25_000)}
    assert all(later[t] == a for t, a in first.items())
    counts = pd.Series(list(first.values())).value_counts(normalize=True)
    assert abs(counts["control"] - 0.2) < 0.015 and abs(counts["b"] - 0.5) < 0.015
    assert readout.srm_p_value(pd.Series(list(first.values())).value_counts().to_dict(),
                               dict(arms)) > 0.001
    other = [ids.arm_for(tok(i), "other", arms) for i in range(2000)]
    assert other != [first[tok(i)] for i in range(2000)]  # keyed by campaign


CAMPAIGN = """
campaigns:
  - id: a
    channel: sms
    states: [PA]
    months: 2024-01..2024-03
    arms: {control: 0.5, treatment: 0.5}
    primary_metric: applied
"""




@pytest.mark.parametrize("old, new, message", [
    ("primary_metric: applied", "primary_metric: clicks",
     r"test.yaml:3: campaign 'a': unknown metric 'clicks'"),
    ("{control: 0.5, treatment: 0.5}", "{control: 0.5, treatment: 0.4}",
     r"test.yaml:3: campaign 'a': arm weights sum to 0.9, not 1"),
    ("channel: sms", "channel: fax", "channel must be one of sms, call"),
    ("states: [PA]", "states: [PA, XX]", "unknown state code"),
])
def test_a_bad_campaign_is_refused_naming_file_line_and_rule(old, new, message):
    with pytest.raises(OutreachConfigError, match=message):
        parse_config(CAMPAIGN.replace(old, new), "test.yaml")


def test_overlapping_campaigns_and_bad_do_not_contact_rows_are_refused(tmp_path):
    two = CAMPAIGN + CAMPAIGN.split("campaigns:\n", 1)[1].replace("id: a", "id: b").replace(
        "2024-01..2024-03", "2024-03..2024-05")
    with pytest.raises(OutreachConfigError, match=r"test.yaml:9: campaign 'b' overlaps campaign "
                                                  r"'a' \(line 3\) in 1 state x month"):
        parse_config(two, "test.yaml")
    (tmp_path / "dnc.csv").write_text(f"person_token,reason\n{tok(1)},asked\n123456789,x\n")
    with pytest.raises(OutreachConfigError, match=r"dnc.csv:3: person_token must be tok_"):
        parse_config("mail:\n  do_not_contact: dnc.csv\n", "t.yaml", base_dir=tmp_path)
    assert load_config().campaigns  # the shipped file is valid


def test_the_interval_covers_the_planted_lift_in_at_least_93_percent_of_400_experiments():
    draw = np.random.default_rng(20261207)
    p_control, lift, n = 0.10, 0.04, 2000
    covered = 0
    for _ in range(400):
        arm = np.where(draw.random(n) < 0.5, "treatment", "control")
        p = np.where(arm == "treatment", p_control + lift, p_control)
        people = pd.DataFrame({"arm": arm, "applied": (draw.random(n) < p).astype(int)})
        out = readout.readout(people, campaign_id="c", weights={"control": .5, "treatment": .5},
                              control_arm="control", metrics=["applied"])
        row = out[out["arm"] == "treatment"].iloc[0]
        covered += row["ci_low"] <= lift <= row["ci_high"]
    assert covered / 400 >= 0.93


def test_srm_flags_a_planted_52_48_split_and_then_no_lift_is_trustworthy():
    people = pd.DataFrame({"arm": ["treatment"] * 10_400 + ["control"] * 9_600,
                           "applied": [1, 0, 0, 0] * 2_600 + [1, 0, 0, 0, 0] * 1_920})
    out = readout.readout(people, campaign_id="c", weights={"control": .5, "treatment": .5},
                          control_arm="control", metrics=["applied"])
    assert out["srm_p_value"].iloc[0] < 0.001 and out["srm_flag"].all()
    assert not out["trustworthy"].any()
    even = people.iloc[200:].assign(arm=["treatment"] * 10_000 + ["control"] * 9_800)
    assert readout.readout(even, campaign_id="c", weights={"control": .5, "treatment": .5},
                           control_arm="control", metrics=["applied"])["srm_p_value"].iloc[0] \
        > 0.001
