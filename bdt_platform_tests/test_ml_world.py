"""The response model through the real pipeline, on the `bdt demo` scope (MA, MD, ME x
2024-01..2024-03, scale 1, seed 42): generate, ingest, build. The March version is recorded in
``ml.model_versions`` and the lake with its hash, its held-out AUC is above 0.6, March's lists
are cut by its scores, and a rebuild with nothing new gives the same versions, scores, lists,
ids, ranks and arms."""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.core.partitions import month_range
from bdt_platform.ml.assets import MODEL_KEY, PROMOTION_CHECK
from bdt_platform.outreach.config import load_config

from .conftest import DEMO_MONTHS, DEMO_STATES, built_demo_home

STATES = DEMO_STATES
MONTHS = month_range(f"{DEMO_MONTHS[0]}..{DEMO_MONTHS[-1]}")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions

    settings = built_demo_home(tmp_path_factory, "ml")
    defs = build_definitions(settings)
    instance = instance_for(settings)
    yield settings, defs, instance
    instance.dispose()


def q(defs, sql: str) -> pd.DataFrame:
    frame = defs.resources["warehouse"].query(sql)
    for column in ("month", "scored_month", "test_month"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def test_the_demo_version_is_recorded_with_its_hash_and_an_auc_above_0_6(world):
    settings, defs, instance = world
    versions = q(defs, "select * from ml.model_versions")
    (row,) = versions.itertuples()  # three months: March's version (train Jan, test Feb)
    assert (row.scored_month, row.test_month, row.train_months) == (MONTHS[2], MONTHS[1],
                                                                    "2024-01")
    assert row.auc > 0.6 and row.top_decile_lift > 1.5 and 0 < row.brier < 0.25
    assert row.promoted and pd.isna(row.previous_version)
    assert row.model_version == f"rm-202403-{row.sha256[:12]}"
    data = defs.resources["lake"].path(row.lake_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == row.sha256
    # The same numbers are the materialization's metadata (floats: the UI plots them).
    event = instance.get_latest_materialization_event(MODEL_KEY)
    metadata = event.asset_materialization.metadata
    for name in ("auc", "top_decile_lift", "brier"):
        assert isinstance(metadata[name], dg.FloatMetadataValue)
        assert metadata[name].value == pytest.approx(getattr(row, name))
    assert metadata["model_version"].value == row.model_version
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(MODEL_KEY, PROMOTION_CHECK), limit=1)
    assert checks and checks[0].event.dagster_event.event_specific_data.passed


def test_march_lists_are_cut_by_the_scores_and_earlier_months_by_programs(world):
    _, defs, _ = world
    config = load_config()
    (version,) = q(defs, "select model_version from ml.model_versions")["model_version"]
    scores = q(defs, "select * from ml.propensity_scores")
    assert set(scores["month"]) == {MONTHS[2]} and set(scores["model_version"]) == {version}
    people = q(defs, "select distinct state, month, person_token from "
                     "staging.stg_partners__eligibility where month = date '2024-03-01'")
    assert len(scores) == len(people) and scores["score"].between(0, 1).all()
    mail = q(defs, "select * from outreach.mail_list")
    for (state, month), part in mail.groupby(["state", "month"]):
        part = part.sort_values("rank")
        control = int((part["arm"] == "random_control").sum())
        assert control == round(config.budget(state, month) * config.control_share) > 0
        if month < MONTHS[2]:
            assert part["score"].isna().all() and part["model_version"].isna().all()
            continue
        assert (part["model_version"] == version).all() and part["score"].notna().all()
        assert part["score"].is_monotonic_decreasing  # rank 1 = highest score
        mine = scores[(scores["state"] == state)].set_index("person_token")["score"]
        assert (part.set_index("person_token")["score"] == mine[part["person_token"]]).all()


def test_a_rebuild_with_nothing_new_gives_the_same_versions_scores_and_lists(world):
    _, defs, instance = world
    from bdt_platform.warehouse.build import build

    def snapshot():
        return (q(defs, "select * from ml.model_versions order by scored_month"),
                q(defs, "select * from ml.propensity_scores order by state, month, "
                        "person_token"),
                q(defs, "select * from outreach.mail_list order by state, month, rank"))

    before = snapshot()
    # Forced: without it nothing is new and nothing would run.
    result = build(defs, instance, defs.resources["warehouse"], echo=lambda line: None,
                   force=True)
    assert result.exit_code == 0 and result.runs
    for old, new in zip(before, snapshot()):
        pd.testing.assert_frame_equal(old.reset_index(drop=True), new.reset_index(drop=True))
    # The version was taken back (read from ml.model_versions and the lake), not fitted again.
    [record] = instance.get_asset_records([MODEL_KEY])
    metadata = record.asset_entry.last_materialization.asset_materialization.metadata
    assert metadata["versions"].value == metadata["versions_reused"].value == 1


def test_the_lift_readout_compares_the_model_with_random_targeting(world):
    _, defs, _ = world
    readout = q(defs, "select * from reports.mail_list_readout")
    mail = q(defs, "select month, arm, count(*) as n from outreach.mail_list group by 1, 2")
    assert set(readout["campaign_id"]) == {f"mail-list-{m:%Y-%m}" for m in MONTHS}
    for row in mail.itertuples():
        mine = readout[(readout["campaign_id"] == f"mail-list-{row.month:%Y-%m}")
                       & (readout["arm"] == row.arm)]
        assert set(mine["metric"]) == {"applied", "approved", "called"}
        assert (mine["n"] == row.n).all() and (mine["conversions"] <= row.n).all()
    model = readout[readout["arm"] == "model"]
    assert model["lift_vs_control"].notna().all()
    assert ((model["ci_low"] <= model["lift_vs_control"])
            & (model["lift_vs_control"] <= model["ci_high"])).all()
    assert readout[readout["arm"] == "random_control"]["lift_vs_control"].isna().all()
    applied = readout[readout["metric"] == "applied"]
    assert (applied["conversions"] > 0).any()


def test_the_demo_summary_names_the_lists_the_model_and_the_lifts(world):
    """What `bdt demo` prints after its tables: the lists' pieces, the model in force with its
    held-out figures, and each campaign's primary lift with its interval."""
    from bdt_platform.cli.demo import outreach_summary

    settings, defs, instance = world
    lines = outreach_summary(defs.resources["warehouse"])
    pieces = q(defs, "select count(*) as n, sum(case when arm = 'random_control' then 1 else 0 "
                     "end) as control from outreach.mail_list").iloc[0]
    assert pieces.n > 0 and 0 < pieces.control < pieces.n
    assert f"Outreach: {int(pieces.n):,} mail pieces on {len(STATES) * len(MONTHS)} state x " \
           f"month list(s), {int(pieces.control):,} of them the random control" in lines[1]
    (version,) = q(defs, "select * from ml.model_versions").itertuples()
    assert any(line.strip().startswith(f"model {version.model_version}: held-out AUC "
                                       f"{version.auc:.3f}") for line in lines)
    lifts = q(defs, "select * from reports.ab_readout where is_primary and lift_vs_control "
                    "is not null")
    assert len(lifts) > 0
    for row in lifts.itertuples():
        assert any(line.strip().startswith(f"{row.campaign_id} {row.arm}: {row.metric} "
                                           f"{row.lift_vs_control:+.3f}") for line in lines)
