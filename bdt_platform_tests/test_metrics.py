"""The metric layer: metrics defined once (dbt's semantic layer), compiled by MetricFlow.

One small world (two states x two months) is built once; the tests then check that
``reports.outcomes`` holds exactly the metric layer's values on every partition, that each
drill-down lists as many records as the number it came from, that the values match what the raw
feeds say when counted by hand, and that ``bdt metrics`` refuses bad input without ever turning
it into SQL or Jinja.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import duckdb
import pandas as pd
import pytest

from bdt_platform.core.settings import SettingsError, load_settings
from bdt_platform.metrics import MetricError, MetricLayer
from bdt_platform.metrics.snapshot import SnapshotReader, snapshot_path
from bdt_platform.reports.outcomes import COUNT_COLUMNS, REPORT_METRICS
from bdt_platform.synthetic import generate

from .conftest import TEST_PII_KEY, cli_environment, ingest_and_build, make_settings

STATES = ["NJ", "PA"]
MONTHS = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
REQUIRED = ["people_eligible", "pieces_mailed", "mail_return_rate", "people_nudged", "calls",
            "call_rate", "applications", "application_rate", "approvals", "approval_rate",
            "denials", "pending", "benefit_usd_monthly", "enrollments_per_1000_mailed",
            "cost_per_enrollment", "days_mailing_to_application"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions

    home = tmp_path_factory.mktemp("metrics") / "home"
    settings = make_settings(home)
    generate(home / "inbox", settings.casemgmt_sqlite_path, states=STATES, months=MONTHS,
             scale=0.3, seed=5, pii_key=TEST_PII_KEY)
    defs = build_definitions(settings)
    instance = instance_for(settings)
    ingested, built, lines = ingest_and_build(defs, instance)
    assert ingested.exit_code == 0 and built.exit_code == 0, lines
    warehouse = defs.resources["warehouse"]
    yield settings, warehouse, defs
    instance.dispose()


def _report(settings) -> pd.DataFrame:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        frame = con.sql("select * from reports.outcomes order by state, month").df()
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    return frame


def test_every_required_metric_is_defined_with_a_description(world):
    settings, _, _ = world
    layer = MetricLayer.for_settings(settings, snapshot=True)
    defined = {m.name: m for m in layer.metrics()}
    assert set(REQUIRED) <= set(defined)
    for metric in defined.values():
        assert len(metric.description) > 20, metric.name
        assert {"state", "month"} <= set(metric.dimensions)
    assert "program" in defined["applications"].dimensions
    assert "program" in defined["approval_rate"].dimensions
    assert "program" not in defined["calls"].dimensions  # calls carry no program
    assert defined["approval_rate"].kind == "ratio"
    assert defined["cost_per_enrollment"].kind == "derived"
    assert defined["mail_return_rate"].higher_is_better is False


def test_the_report_holds_the_metric_layers_values_on_every_partition(world):
    settings, _, _ = world
    report = _report(settings)
    assert sorted(zip(report["state"], report["month"])) == [(s, m) for s in STATES
                                                              for m in MONTHS]
    layer = MetricLayer.for_settings(settings, snapshot=True)
    layer.refresh()
    values = layer.query(REPORT_METRICS, by=("state", "month"))
    assert len(values) == len(report)
    for column in REPORT_METRICS:
        mine = values[column].astype("float64").round(6).tolist()
        theirs = report[column].astype("float64").round(6).tolist()
        assert [None if math.isnan(v) else v for v in mine] == \
               [None if math.isnan(v) else v for v in theirs], column
    assert (report["pieces_mailed"] > 0).all() and report["approvals"].sum() > 0


def test_values_match_the_feeds_counted_by_hand(world):
    """An independent count from the raw tables, not from the definitions."""
    settings, _, _ = world
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        by_hand = con.sql("""
            select e.state, e.month, e.people, m.pieces, m.returned, o.approved, o.denied
            from (select state, month, count(distinct person_token) as people
                  from raw.eligibility group by all) e
            join (select state, month, count(*) as pieces,
                         count(*) filter (where lower(status) in ('returned', 'undeliverable'))
                           as returned
                  from raw.mailreturns group by all) m using (state, month)
            join (select state, month,
                         count(*) filter (where lower(decision) = 'approved') as approved,
                         count(*) filter (where lower(decision) = 'denied') as denied
                  from raw.outcomes group by all) o using (state, month)
            order by state, month""").df()
    layer = MetricLayer.for_settings(settings, snapshot=True)
    values = layer.query(["people_eligible", "pieces_mailed", "mail_return_rate",
                          "approval_rate", "mail_cost_usd"])
    assert values["people_eligible"].tolist() == by_hand["people"].astype(float).tolist()
    assert values["pieces_mailed"].tolist() == by_hand["pieces"].astype(float).tolist()
    assert values["mail_return_rate"].round(9).tolist() == \
        (by_hand["returned"] / by_hand["pieces"]).round(9).tolist()
    decided = (by_hand["approved"] + by_hand["denied"]).astype(float)
    expected_rate = (by_hand["approved"] / decided.where(decided > 0)).round(9)
    assert values["approval_rate"].round(9).fillna(-1).tolist() == \
        expected_rate.fillna(-1).tolist()  # empty (no decisions) where the report says so
    # The median days from mailing (an approximate quantile) within a day of the exact median
    # of the same values.
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        exact = con.sql("select state, month, median(days_from_mailing) as days from "
                        "semantic.sem_applications group by all order by state, month").df()
    days = layer.query(["days_mailing_to_application"])
    assert len(days) == len(exact)
    assert ((days["days_mailing_to_application"] - exact["days"]).abs() <= 1).all()
    # The configured cost of a piece (BDT_MAIL_PIECE_COST_USD, default 0.65) reached dbt.
    assert values["mail_cost_usd"].round(6).tolist() == \
        (by_hand["pieces"] * settings.mail_piece_cost_usd).round(6).tolist()


def test_a_drill_down_lists_as_many_records_as_the_number(world):
    settings, _, _ = world
    layer = MetricLayer.for_settings(settings, snapshot=True)
    values = layer.query(REPORT_METRICS)
    counts = [c for c in COUNT_COLUMNS]
    for row in values.itertuples(index=False):
        for name in counts:
            records = layer.records(name, row.state, row.month)
            assert len(records) == getattr(row, name), (name, row.state, row.month)
        benefit = layer.records("benefit_usd_monthly", row.state, row.month)
        assert benefit["amount"].sum() == pytest.approx(row.benefit_usd_monthly, abs=0.05)
        # A ratio drills down to its numerator's records.
        assert len(layer.records("approval_rate", row.state, row.month)) == row.approvals
    records = layer.records("applications", "PA", "2024-02")
    assert list(records.columns) == ["record_id", "person_token", "program", "occurred_on",
                                     "source_file", "amount"]
    assert records["person_token"].str.match(r"^tok_[0-9a-f]{32}$").all()
    assert records["program"].notna().all() and records["source_file"].notna().all()
    mail = layer.records("pieces_mailed", "PA", "2024-02")
    assert mail["record_id"].str.startswith("MP-PA-").all()  # the vendor's piece ids


def test_program_grouping_adds_up_to_the_state_total(world):
    settings, _, _ = world
    layer = MetricLayer.for_settings(settings, snapshot=True)
    by_program = layer.query(["applications", "approvals"], by=("state", "month", "program"),
                             states=["PA"], months="2024-01..2024-02")
    totals = layer.query(["applications", "approvals"], states=["PA"], months="2024-01..2024-02")
    summed = by_program.groupby(["state", "month"], as_index=False)[["applications",
                                                                      "approvals"]].sum()
    assert summed["applications"].tolist() == totals["applications"].tolist()
    assert summed["approvals"].tolist() == totals["approvals"].tolist()
    assert by_program["program"].nunique() > 1
    one = layer.query(["calls"], by=("month",), states=["NJ"], months="2024-02")
    assert one["month"].tolist() == [dt.date(2024, 2, 1)]


@pytest.mark.parametrize("request_args, reason", [
    ({"names": ["no_such_metric"]}, "unknown metric 'no_such_metric'"),
    ({"names": ["calls"], "by": ["county"]}, "unknown dimension 'county'"),
    ({"names": ["calls"], "by": ["program"]}, "metric calls has no dimension program"),
    ({"names": ["calls"], "states": ["ZZ"]}, "unknown state 'ZZ'"),
    ({"names": ["calls"], "states": ["PA') or 1=1 --"]}, "unknown state"),
    ({"names": ["calls"], "states": ["{{ 7*7 }}"]}, "unknown state"),
    ({"names": ["{{ Entity('state') }}"]}, "unknown metric"),
    ({"names": ["calls"], "months": "2024-13"}, "not a month"),
    ({"names": ["calls"], "months": "2024-03..2024-01"}, "ends before it starts"),
])
def test_bad_requests_are_refused_with_the_reason(world, request_args, reason):
    settings, _, _ = world
    layer = MetricLayer.for_settings(settings, snapshot=True)
    with pytest.raises(MetricError, match=reason.replace("(", r"\(").replace(")", r"\)")
                       .replace("{", r"\{").replace("}", r"\}").replace("*", r"\*")):
        layer.query(**request_args)


def test_the_reader_never_blocks_a_writer_and_sees_the_next_build(world):
    settings, warehouse, _ = world
    reader = SnapshotReader(snapshot_path(settings.site_dir))
    before = reader.query("select count(*) as n from reports.outcomes")["n"].iloc[0]
    # With the reader's connection open, the warehouse opens for writing (nothing locked).
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create schema if not exists scratch")
        con.execute("create or replace table scratch.marker as select 42 as answer")
    published = warehouse.publish_snapshot()
    assert published == str(snapshot_path(settings.site_dir))
    assert reader.query("select answer from scratch.marker")["answer"].tolist() == [42]
    assert reader.query("select count(*) as n from reports.outcomes")["n"].iloc[0] == before
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("drop schema scratch cascade")
    warehouse.publish_snapshot()
    reader.close()


def test_bdt_metrics_list_and_query(world, monkeypatch, capsys):
    from bdt_platform.cli import main

    settings, _, _ = world
    cli_environment(monkeypatch, settings.home, settings.partners_path)
    assert main(["metrics", "list", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["name"] for m in listed} >= set(REQUIRED)
    assert main(["metrics", "query", "approvals,approval_rate", "--states", "PA",
                 "--months", "2024-01..2024-02", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    report = _report(settings)
    pa = report[report["state"] == "PA"]
    assert [r["approvals"] for r in answer["rows"]] == pa["approvals"].astype(float).tolist()
    assert [r["month"] for r in answer["rows"]] == ["2024-01-01", "2024-02-01"]
    assert main(["metrics", "query", "applications", "--by", "program", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("program,applications\n")
    assert main(["metrics", "query", "calls", "--by", "state", "--format", "table"]) == 0
    assert "NJ" in capsys.readouterr().out
    for argv, reason in ((["metrics", "query", "nope"], "unknown metric 'nope'"),
                         (["metrics", "query", "calls", "--by", "program"], "no dimension"),
                         (["metrics", "query", "calls", "--states", "P;A"], "unknown state")):
        assert main(argv) == 2
        assert reason in capsys.readouterr().err


def test_the_mail_piece_cost_setting_is_checked():
    assert load_settings({"BDT_HOME": "/tmp/x", "BDT_PII_KEY": "k",
                          "BDT_MAIL_PIECE_COST_USD": "0.8"}).mail_piece_cost_usd == 0.8
    for bad in ("-1", "cheap", "nan"):
        with pytest.raises(SettingsError, match="BDT_MAIL_PIECE_COST_USD"):
            load_settings({"BDT_HOME": "/tmp/x", "BDT_PII_KEY": "k",
                           "BDT_MAIL_PIECE_COST_USD": bad})
