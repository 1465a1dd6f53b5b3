"""The effects the generator plants (``synthetic/truth.py``) are there to be found: the call
probabilities keep each letter status's documented average, people call more as their planted
log-odds rise, and the A/B readout finds the planted nudge lift (positive, no larger than
planted). The model's side is ``test_ml_model.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bdt_platform.core.partitions import month_range
from bdt_platform.outreach import readout
from bdt_platform.synthetic import truth
from bdt_platform.synthetic.formats import SECONDS_PER_DAY
from bdt_platform.synthetic.funnel import simulate_month
from bdt_platform.synthetic.people import build_pool

from .conftest import TEST_PII_KEY

STATES = ("MA", "MD", "ME", "NJ", "NY", "PA", "VA", "OH")
MONTHS = month_range("2024-01..2024-03")


def test_call_probabilities_keep_each_status_average_and_follow_the_log_odds():
    pool = build_pool("PA", seed=42, scale=1.0, pii_key=TEST_PII_KEY)
    log_odds = truth.person_log_odds(pool.household_size, pool.income_cents, pool.language,
                                     pool.eligible.sum(axis=1), pool.responsiveness)
    order = np.argsort(log_odds)
    for status, base in truth.CALL_P_BY_STATUS.items():
        p = pool.call_p[status]
        assert abs(p.mean() - base) < 1e-9
        assert np.all(np.diff(p[order]) >= 0)  # monotone in the planted log-odds
    # The hidden responsiveness is the documented spread, and in no file.
    assert abs(pool.responsiveness.std() - truth.RESPONSIVENESS_SD) < 0.1


def test_people_call_more_as_their_planted_log_odds_rise():
    called, odds = [], []
    for state in STATES[:4]:
        pool = build_pool(state, seed=42, scale=1.0, pii_key=TEST_PII_KEY)
        log_odds = truth.person_log_odds(pool.household_size, pool.income_cents,
                                         pool.language, pool.eligible.sum(axis=1),
                                         pool.responsiveness)
        for month in MONTHS:
            activity = simulate_month(pool, month, seed=42, scale=1.0)
            mailed = activity.mail["person"]
            callers = set(activity.calls["person"].tolist())
            called += [p in callers for p in mailed.tolist()]
            odds += log_odds[mailed].tolist()
    frame = pd.DataFrame({"called": called, "odds": odds})
    frame["quartile"] = pd.qcut(frame["odds"], 4, labels=False)
    rates = frame.groupby("quartile")["called"].mean().to_numpy()
    assert np.all(np.diff(rates) > 0) and rates[-1] > 3 * rates[0]


def test_the_readout_finds_the_planted_nudge_lift():
    rows = []
    for state in STATES:
        pool = build_pool(state, seed=42, scale=1.0, pii_key=TEST_PII_KEY)
        for month in MONTHS:
            activity = simulate_month(pool, month, seed=42, scale=1.0)
            events = pd.DataFrame({k: activity.nudges[k] for k in
                                   ("campaign_id", "arm", "person", "event_type", "event_ts")})
            first = (events[events["event_type"] == "sent"].groupby("person", as_index=False)
                     .agg(arm=("arm", "first"), first_ts=("event_ts", "min")))
            calls = pd.DataFrame({"person": activity.calls["person"],
                                  "started": activity.calls["started"]})
            joined = first.merge(calls, on="person")
            window = 30 * SECONDS_PER_DAY
            hit = joined[(joined["started"] >= joined["first_ts"])
                         & (joined["started"] <= joined["first_ts"] + window)]
            first["called"] = first["person"].isin(set(hit["person"])).astype(int)
            first["mailed"] = first["person"].isin(set(activity.mail["person"].tolist()))
            rows.append(first)
    people = pd.concat(rows, ignore_index=True)
    result = readout.readout(people, campaign_id="all", weights={"control": 0.5,
                                                                  "treatment": 0.5},
                             control_arm="control", metrics=["called"], alpha=0.05,
                             srm_alpha=0.001, attribution_days=30)
    treated = result[result["arm"] == "treatment"].iloc[0]
    planted = truth.NUDGE_CALL_LIFT["treatment"] - truth.NUDGE_CALL_LIFT["control"]
    # Only mailed people get the lift (on their letter's call probability).
    most = planted * people["mailed"].mean()
    assert 0 < treated["ci_low"] < treated["lift_vs_control"] < treated["ci_high"]
    assert treated["ci_low"] < most
    assert treated["srm_p_value"] > 0.001
