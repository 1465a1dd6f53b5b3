"""The response model: it finds the signal the generator plants (truth.py), its held-out AUC is
above 0.6, it reads nothing but its feature list, the same rows give the same version and
scores, a version worse than the one in force is not promoted, and the mail list's random
control ignores the scores. The frames here are the generator's own rows, shaped as the
warehouse's staging views (eligibility files, applications with the client's person token);
``test_ml_world.py`` runs the same through ingest and build."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from bdt_platform.core.partitions import month_range
from bdt_platform.ml import features, train, versions
from bdt_platform.outreach import rules
from bdt_platform.synthetic import feeds, truth
from bdt_platform.synthetic.formats import timestamps
from bdt_platform.synthetic.funnel import simulate_month
from bdt_platform.synthetic.people import build_pool
from bdt_platform.synthetic.split import split_eligible

from .conftest import TEST_PII_KEY

DEMO_STATES = ("MA", "MD", "ME")  # the `bdt demo` scope
DEMO_MONTHS = tuple(month_range("2024-01..2024-03"))
LABEL_DAYS, MARGIN = 28, 0.02


@lru_cache(maxsize=8)
def world(states: tuple[str, ...], months: tuple[dt.date, ...], seed: int = 42,
          scale: float = 1.0):
    """(eligibility rows, applications, {token: planted log-odds}) as the warehouse has them."""
    eligibility, applications, planted = [], [], {}
    for state in states:
        pool = build_pool(state, seed=seed, scale=scale, pii_key=TEST_PII_KEY)
        log_odds = truth.person_log_odds(pool.household_size, pool.income_cents, pool.language,
                                         pool.eligible.sum(axis=1),
                                         np.zeros(len(pool)))  # what the files show
        planted.update(zip(pool.token.tolist(), log_odds.tolist()))
        for month in months:
            activity = simulate_month(pool, month, seed=seed, scale=scale)
            shares = split_eligible(pool, activity.eligible, seed=seed)
            for partner, people in shares.items():
                frame = pd.DataFrame(feeds.eligibility(pool, activity, people,
                                                       feeds.record_prefix(partner, state)))
                # The platform tokenizes the PII; the pool knows each person's token.
                frame["person_token"] = pool.token[people]
                frame["_partner"], frame["month"] = partner, month
                eligibility.append(frame)
            apps = activity.applications
            applications.append(pd.DataFrame({
                "person_token": pool.token[apps["person"]],
                "submitted_at": pd.to_datetime(timestamps(apps["submitted"]), utc=True)}))
    eligibility = pd.concat(eligibility, ignore_index=True)
    eligibility["household_size"] = eligibility["household_size"].astype(int)
    eligibility["monthly_income"] = eligibility["monthly_income"].astype(float)
    return eligibility, pd.concat(applications, ignore_index=True), planted


@lru_cache(maxsize=8)
def trained(states, months, seed=42):
    eligibility, applications, _ = world(states, months, seed)
    frame = features.build_features(eligibility, applications)
    return frame, applications, versions.train_versions(
        frame, applications, label_days=LABEL_DAYS, margin=MARGIN)


def test_features_are_the_list_and_never_pii():
    eligibility, applications, _ = world(DEMO_STATES[:1], DEMO_MONTHS[:2])
    frame = features.build_features(eligibility, applications)
    assert list(frame.columns) == [*features.KEY, *features.FEATURES]
    pii = {"ssn", "first_name", "last_name", "date_of_birth", "address_line1", "address_line2",
           "city", "zip", "phone", "email"}
    assert not pii & set(features.FEATURES) and not pii & set(features.ELIGIBILITY_COLUMNS)
    assert frame[list(features.FEATURES)].notna().all().all()
    # One row per person x state x month, however many partners list the person.
    people = eligibility.groupby(["state", "month"])["person_token"].nunique().sum()
    assert len(frame) == people and not frame.duplicated(list(features.KEY)).any()


def test_history_features_use_only_earlier_months():
    eligibility, applications, _ = world(DEMO_STATES[:1], DEMO_MONTHS)
    frame = features.build_features(eligibility, applications)
    first = frame[frame["month"] == DEMO_MONTHS[0]]
    assert (first[["months_since_first_eligible", "prior_months_eligible",
                   "prior_applications"]] == 0).all().all()
    # Truncating the later months changes nothing about the earlier ones.
    early = features.build_features(
        eligibility[eligibility["month"] < DEMO_MONTHS[2]],
        applications[applications["submitted_at"] < pd.Timestamp(DEMO_MONTHS[2], tz="UTC")])
    merged = early.merge(frame, on=list(features.KEY), suffixes=("", "_all"))
    assert len(merged) == len(early)
    for column in features.FEATURES:
        assert (merged[column] == merged[f"{column}_all"]).all(), column
    # A person's earlier applications are counted in the later months.
    later = frame[frame["month"] == DEMO_MONTHS[2]]
    assert later["prior_applications"].sum() > 0


def test_equal_inputs_give_the_kept_rows_and_any_change_builds_again(monkeypatch):
    """The model, the scores and the forecast of one build each ask for the feature rows of
    the same tables (their rows in any order): built once (``features._memo``), and a changed
    row, column type or
    application is never answered from the kept rows; a caller changing its copy changes
    nothing kept."""
    eligibility, applications, _ = world(DEMO_STATES[:1], DEMO_MONTHS[:2])
    monkeypatch.setattr(features, "_memo", {})  # nothing kept from the tests before
    built = []
    real = features._build_features
    monkeypatch.setattr(features, "_build_features",
                        lambda *args: built.append(1) or real(*args))
    first = features.build_features(eligibility, applications)
    first["household_size"] = -1.0  # the caller's copy
    # The same rows in another order (a query's rows come in any order): the kept rows, and
    # they are the rows the original order builds.
    again = features.build_features(eligibility.sample(frac=1.0, random_state=3),
                                    applications.sample(frac=1.0, random_state=4))
    assert len(built) == 1
    pd.testing.assert_frame_equal(again, real(eligibility, applications))
    pd.testing.assert_frame_equal(again, real(eligibility.sample(frac=1.0, random_state=5),
                                              applications.sample(frac=1.0, random_state=6)))
    income = eligibility.copy()
    income.loc[income.index[0], "monthly_income"] += 1.0
    changed = features.build_features(income, applications)
    assert len(built) == 2
    assert changed["monthly_income_1000"].sum() != again["monthly_income_1000"].sum()
    features.build_features(eligibility, applications.iloc[1:])
    features.build_features(eligibility.astype({"household_size": "float64"}), applications)
    assert len(built) == 4


def test_the_held_out_auc_on_the_demo_data_is_above_0_6_for_several_seeds():
    for seed in (42, 7, 11):
        _, _, found = trained(DEMO_STATES, DEMO_MONTHS, seed)
        (version,) = found  # March: trained on January, tested on February
        assert version.plan == train.VersionPlan(DEMO_MONTHS[2], DEMO_MONTHS[1],
                                                 (DEMO_MONTHS[0],))
        assert version.metrics.auc > 0.6, (seed, version.metrics)
        assert version.metrics.top_decile_lift > 1.5, (seed, version.metrics)
        assert 0 < version.metrics.brier < version.metrics.positives / version.metrics.n
        assert version.promoted and version.previous_version is None


def test_the_model_recovers_the_planted_effects():
    months = tuple(month_range("2024-01..2024-06"))
    frame, applications, found = trained(("MA", "MD", "ME", "NJ"), months)
    newest = found[-1]
    coef = dict(zip(features.FEATURES, newest.model.named_steps["logit"].coef_[0]))
    # The signs of the planted effects (truth.CALL_LOG_ODDS, LANGUAGE_LOG_ODDS).
    assert np.sign(coef["household_size"]) == np.sign(truth.CALL_LOG_ODDS["household_size"])
    assert np.sign(coef["monthly_income_1000"]) == np.sign(
        truth.CALL_LOG_ODDS["monthly_income_1000"])
    assert np.sign(coef["programs_to_offer"]) == np.sign(truth.CALL_LOG_ODDS["programs_eligible"])
    assert np.sign(coef["language_es"]) == np.sign(truth.LANGUAGE_LOG_ODDS["es"])
    # The hidden responsiveness shows through earlier applications.
    assert coef["prior_applications"] > 0
    # Scores order people as the planted (observable) log-odds do.
    _, _, planted = world(("MA", "MD", "ME", "NJ"), months)
    rows = frame[frame["month"] == newest.plan.scored_month]
    rho = spearmanr(train.score(newest.model, rows),
                    rows["person_token"].map(planted)).statistic
    assert rho > 0.6
    # Every version beats random targeting on its held-out month.
    assert all(v.metrics.auc > 0.6 and v.metrics.top_decile_lift > 1.3 for v in found)


def test_the_scorer_reads_only_the_feature_columns():
    frame, _, found = trained(DEMO_STATES, DEMO_MONTHS)
    model = found[0].model
    rows = frame[frame["month"] == DEMO_MONTHS[2]].reset_index(drop=True)
    expected = train.score(model, rows)
    draw = np.random.default_rng(3)
    poisoned = rows.assign(ssn="123456789", first_name="Ana", applied=1,
                           noise=draw.normal(size=len(rows)),
                           state=draw.permutation(rows["state"].to_numpy()))
    poisoned = poisoned[list(reversed(poisoned.columns))]  # columns in another order
    assert np.array_equal(train.score(model, poisoned), expected)
    only = rows[list(features.FEATURES)]  # nothing but the features
    assert np.array_equal(train.score(model, only), expected)
    with pytest.raises(KeyError):
        train.score(model, rows.drop(columns=["monthly_income_1000"]))
    # A feature column does change the scores (the test above could not pass vacuously).
    changed = rows.assign(monthly_income_1000=rows["monthly_income_1000"] + 2.0)
    assert not np.array_equal(train.score(model, changed), expected)


def test_same_rows_same_version_bytes_and_scores():
    eligibility, applications, _ = world(DEMO_STATES, DEMO_MONTHS)
    runs = []
    for order in (None, 5):
        rows = eligibility if order is None else eligibility.sample(frac=1.0, random_state=order)
        frame = features.build_features(rows, applications)
        found = versions.train_versions(frame, applications, label_days=LABEL_DAYS,
                                        margin=MARGIN)
        scored = train.score(found[0].model, frame[frame["month"] == DEMO_MONTHS[2]])
        runs.append((found[0].model_version, found[0].sha256, found[0].data, scored))
    (v1, s1, d1, p1), (v2, s2, d2, p2) = runs
    assert v1 == v2 and s1 == s2 and d1 == d2 and np.array_equal(p1, p2)
    assert v1 == f"rm-202403-{s1[:12]}"
    loaded = train.deserialize(d1)
    frame = features.build_features(eligibility, applications)
    assert np.array_equal(train.score(loaded, frame[frame["month"] == DEMO_MONTHS[2]]), p1)


def test_a_version_trained_on_shuffled_labels_is_not_promoted():
    months = tuple(month_range("2024-01..2024-04"))
    eligibility, applications, _ = world(DEMO_STATES, months)
    frame = features.build_features(eligibility, applications)
    good = versions.train_versions(frame, applications, label_days=LABEL_DAYS, margin=MARGIN)
    assert [v.plan.scored_month for v in good] == list(months[2:])
    assert all(v.promoted for v in good)
    draw = np.random.default_rng(0)
    newest_train = good[-1].plan.train_months

    def fit_newest_on_shuffled_labels(rows, y):
        if tuple(sorted(set(rows["month"]))) == newest_train:
            y = draw.permutation(y)
        return train.fit(rows, y)

    found = versions.train_versions(frame, applications, label_days=LABEL_DAYS,
                                    margin=MARGIN, fit=fit_newest_on_shuffled_labels)
    before, newest = found[0], found[-1]
    assert before.model_version == good[0].model_version and before.promoted
    assert newest.previous_version == before.model_version
    assert newest.metrics.auc < newest.previous_auc - MARGIN
    assert not newest.promoted
    # The version in force for April is still March's.
    table = pd.DataFrame({"model_version": [v.model_version for v in found],
                          "scored_month": [v.plan.scored_month for v in found],
                          "promoted": [v.promoted for v in found]})
    assert versions.in_force_for(table, months[3])["model_version"] == before.model_version
    assert versions.in_force_for(table, months[1]) is None


def test_promotion_rule():
    assert train.promoted(0.70, None, 0.02)
    assert train.promoted(0.69, 0.70, 0.02) and train.promoted(0.68, 0.70, 0.02)
    assert not train.promoted(0.67, 0.70, 0.02)
    assert not train.promoted(float("nan"), 0.70, 0.02)


def test_plan_never_tests_on_a_month_it_trains_on_or_an_open_window():
    months = month_range("2024-01..2024-06")
    for plan in train.plan(months, LABEL_DAYS):
        assert plan.test_month < plan.scored_month and plan.test_month not in plan.train_months
        assert all(m < plan.test_month for m in plan.train_months)
    # A 40-day window is still open for last month when this month is scored.
    plans = {p.scored_month: p for p in train.plan(months, 40)}
    assert plans[months[5]].test_month == months[3]


def test_random_control_is_its_share_and_ignores_the_scores():
    frame, _, found = trained(DEMO_STATES, DEMO_MONTHS)
    eligibility, _, _ = world(DEMO_STATES, DEMO_MONTHS)
    month, state, share, budget = DEMO_MONTHS[2], "MA", 0.10, 120
    rows = eligibility[(eligibility["state"] == state) & (eligibility["month"] == month)]
    people = frame[(frame["state"] == state) & (frame["month"] == month)]
    scores = pd.DataFrame({"person_token": people["person_token"],
                           "score": train.score(found[0].model, people)})
    lists = {}
    for name, given in (("model", scores), ("reversed", scores.assign(score=-scores["score"])),
                        ("none", None)):
        lists[name] = rules.select_mail_list(state, month, rows, budget=budget,
                                             control_share=share, scores=given,
                                             model_version="v").rows
    control = {name: set(r.loc[r["arm"] == rules.ARM_CONTROL, "person_token"])
               for name, r in lists.items()}
    assert len(control["model"]) == round(budget * share)
    assert control["model"] == control["reversed"] == control["none"]
    mailed = lists["model"]
    assert len(mailed) == budget and sorted(mailed["rank"]) == list(range(1, budget + 1))
    # The model arm is the best scores of everyone not drawn for the control, in rank order.
    by_token = scores.set_index("person_token")["score"]
    arm = mailed[mailed["arm"] == rules.ARM_MODEL].sort_values("rank")
    assert arm["score"].is_monotonic_decreasing
    left_out = set(by_token.index) - set(mailed["person_token"])
    candidates = set(features.candidates(people)["person_token"])
    assert by_token[list(left_out & candidates)].max() <= arm["score"].min()
    # And it mails more of those who will apply than the random control does.
    assert arm["score"].mean() > mailed.loc[mailed["arm"] == rules.ARM_CONTROL, "score"].mean()


def test_a_new_month_fits_its_version_and_takes_the_others_back():
    """``reuse``: a version whose inputs were made into a version before is that version, not
    fitted again; a new month's version is fitted, and every version equals what fitting all of
    them again makes. The recorded versions go through ``ml.model_versions`` rows and the lake
    (``ml.assets.recorded_versions``), as the asset keeps them."""
    import hashlib
    from pathlib import Path
    import tempfile

    from bdt_platform.ml import assets
    from bdt_platform.storage.lake import LakeResource

    months = tuple(month_range("2024-01..2024-05"))
    eligibility, applications, _ = world(DEMO_STATES[:2], months)
    fitted = []

    def counting_fit(rows, y):
        fitted.append(tuple(sorted(set(rows["month"]))))
        return train.fit(rows, y)

    def train_all(frame, reuse=None):
        fitted.clear()
        return versions.train_versions(frame, applications, label_days=LABEL_DAYS,
                                       margin=MARGIN, fit=counting_fit, reuse=reuse,
                                       code_version="test")

    early = eligibility[pd.to_datetime(eligibility["month"]).dt.date < months[-1]]
    first = train_all(features.build_features(early, applications))
    assert len(fitted) == len(first) >= 2 and all(v.inputs_sha256 for v in first)
    with tempfile.TemporaryDirectory() as folder:
        lake = LakeResource(root=folder)
        paths = {v.model_version: assets.store_version(lake, v) for v in first}
        table = assets.version_rows(first, paths, pd.DataFrame(columns=assets.VERSION_COLUMNS),
                                    LABEL_DAYS, dt.datetime(2024, 6, 1))
        # As the warehouse gives the table back: dates as timestamps, no Python objects.
        table = table.assign(scored_month=pd.to_datetime(table["scored_month"]),
                             test_month=pd.to_datetime(table["test_month"]))
        reuse = assets.recorded_versions(lake, table)
        again = train_all(features.build_features(eligibility, applications), reuse)
        reused_count = len(again) - len(fitted)
        assert fitted == [again[-1].plan.train_months]  # the new month's version only
        assert reused_count == len(first)
        fresh = train_all(features.build_features(eligibility, applications))
        for made, refit in zip(again, fresh, strict=True):
            assert (made.model_version, made.sha256, made.metrics, made.n_train,
                    made.positives_train, made.previous_version, made.promoted,
                    made.inputs_sha256) == \
                (refit.model_version, refit.sha256, refit.metrics, refit.n_train,
                 refit.positives_train, refit.previous_version, refit.promoted,
                 refit.inputs_sha256)
            assert made.previous_auc == refit.previous_auc
            assert hashlib.sha256(made.data).hexdigest() == made.sha256
        # Bytes in the lake that are not the recorded ones are never taken back.
        Path(folder, paths[first[0].model_version]).write_bytes(b"not the model")
        train_all(features.build_features(eligibility, applications),
                  assets.recorded_versions(lake, table))
        assert fitted[0] == first[0].plan.train_months
