"""``bdt explain`` on scripted scenarios, asserting the explanation's content.

One state (PA) x two months, built over and over as the scenarios unfold: a late mail-returns
file, a re-sent outcomes file with corrections, a bad re-send that is quarantined, a dbt model
whose logic changes, and ``--as-of`` reproducing a number after later changes.
"""

import datetime as dt
import gzip
import os
import shutil
import time
from io import StringIO
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from bdt_platform.explain.engine import ExplainError, explain
from bdt_platform.explain.render import to_markdown
from bdt_platform.explain.reproduce import reproduce
from bdt_platform.inbox.ingest import ingest
from bdt_platform.core.runs import instance_for
from bdt_platform.synthetic import generate
from bdt_platform.warehouse.build import build

from .conftest import make_settings

JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
REPORT = "reports.outcomes"


class World:
    def __init__(self, home: Path, dbt_project_dir: Path | None = None):
        from bdt_platform.definitions import build_definitions

        extra = {"BDT_DBT_PROJECT_DIR": str(dbt_project_dir)} if dbt_project_dir else {}
        self.settings = make_settings(home, **extra)
        self.defs = build_definitions(self.settings)
        self.instance = instance_for(self.settings)
        self.resources = self.defs.resources
        self.inbox = Path(self.settings.inbox)

    def ingest(self):
        r = self.resources
        return ingest(self.defs, self.instance, r["inbox"], r["lake"], r["warehouse"],
                      r["casemgmt"], settle_seconds=0, echo=lambda _: None)

    def build(self, *months, force=False):
        result = build(self.defs, self.instance, self.resources["warehouse"], ["PA"],
                       list(months), echo=lambda _: None, force=force)
        assert result.exit_code == 0
        time.sleep(0.01)  # distinct timestamps between materializations
        return result

    def explain(self, month, metric=None, **kwargs):
        return explain(self.instance, self.defs.resolve_asset_graph(), self.resources["lake"],
                       REPORT, "PA", month, metric=metric, **kwargs)

    def report(self, month) -> pd.Series:
        frame = self.resources["warehouse"].query(
            "SELECT * FROM reports.outcomes WHERE state = 'PA' AND month = ?", [month])
        return frame.iloc[0]


def _drop(world: World, partner: str, name: str, text: str) -> None:
    path = world.inbox / partner / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if name.endswith(".gz") else text.encode())
    future = time.time() + 5  # arrives later than anything before it
    os.utime(path, (future, future))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    staging = root / "generated"
    world = World(root / "home")
    generate(staging, world.settings.casemgmt_sqlite_path, states=["PA"], months=[JAN, FEB],
             scale=0.3, seed=11, pii_key=world.settings.pii_key)
    # Every file arrives now except January's mail returns, which will come late.
    late = staging / "mailvendor" / "mailvendor_PA_202401_mailreturns.csv"
    world.late_mailreturns = late.read_text()
    late.unlink()
    shutil.copytree(staging, world.inbox, dirs_exist_ok=True)
    assert world.ingest().exit_code == 0
    world.build(JAN, FEB)  # both months in one run (one dbt command), as `bdt build` does
    world.first_build = time.time()
    world.original_feb_outcomes = (world.inbox / "processed" / "paagency" /
                                   "paagency_PA_202402_outcomes.csv").read_text()
    world.root = root
    yield world
    world.instance.dispose()


def test_late_file_for_an_old_month(world):
    assert world.report(JAN)["pieces_mailed"] == 0
    _drop(world, "mailvendor", "mailvendor_PA_202401_mailreturns.csv", world.late_mailreturns)
    assert world.ingest().exit_code == 0
    world.build(JAN)
    mailed = len(pd.read_csv(StringIO(world.late_mailreturns)))
    assert world.report(JAN)["pieces_mailed"] == mailed > 0

    e = world.explain(JAN, metric="pieces_mailed")
    change = next(m for m in e.metrics if m.name == "pieces_mailed")
    assert (change.before, change.after) == (0, mailed)
    feed = next(u for u in e.upstream if u.key == dg.AssetKey(["raw", "mailreturns"]))
    assert feed.before is None and feed.source_changed
    [rows] = e.rows
    [cause] = rows.causes
    assert cause.label.startswith("late file mailvendor_PA_202401_mailreturns.csv")
    assert len(cause.entered) == mailed and not cause.left and cause.amount == mailed
    text = to_markdown(e)
    assert "late file mailvendor_PA_202401_mailreturns.csv" in text
    assert "file before: none" in text


def test_resent_outcomes_file_with_corrections(world):
    original = pd.read_csv(StringIO(world.original_feb_outcomes), dtype=str, keep_default_na=False)
    corrected = original.copy()
    approved = corrected.index[corrected["decision"] == "approved"][:2]
    denied = corrected.index[corrected["decision"] == "denied"][:1]
    assert len(approved) == 2 and len(denied) == 1
    corrected.loc[approved, "decision"] = "denied"
    corrected.loc[approved, "monthly_benefit_usd"] = "0.00"
    corrected.loc[denied, "decision"] = "approved"
    corrected.loc[denied, "monthly_benefit_usd"] = "123.45"
    world.before_resend = time.time()
    before_numbers = world.report(FEB)
    _drop(world, "paagency", "paagency_PA_202402_outcomes.csv", corrected.to_csv(index=False))
    assert world.ingest().exit_code == 0
    world.build(FEB)
    assert world.report(FEB)["approvals"] == before_numbers["approvals"] - 1

    e = world.explain(FEB)
    by_metric = {rows.metric: rows for rows in e.rows}
    rows = by_metric["approvals"]
    [cause] = rows.causes
    assert cause.label.startswith("re-sent file paagency_PA_202402_outcomes.csv")
    key = lambda i: f"{corrected.loc[i, 'application_id']}:{corrected.loc[i, 'program']}"
    assert sorted(cause.left) == sorted(key(i) for i in approved)
    assert cause.entered == [key(i) for i in denied]
    assert cause.amount == rows.total == -1  # counts add up to the metric's change
    benefit = by_metric["benefit_usd_monthly"]
    assert sum(c.amount for c in benefit.causes) == pytest.approx(benefit.total)
    outcomes = next(u for u in e.upstream if u.key == dg.AssetKey(["raw", "outcomes"]))
    assert outcomes.before.sources["paagency"]["sha256"] != outcomes.after.sources["paagency"]["sha256"]
    assert [partner for partner, *_ in outcomes.file_changes] == ["paagency"]
    text = to_markdown(e)
    assert "paagency_PA_202402_outcomes.csv" in text and key(denied[0]) in text


def test_bad_resend_is_quarantined_and_the_number_holds(world):
    before_numbers = world.report(FEB)
    broken = world.original_feb_outcomes.replace("approved", "APPROVED??", 1)
    _drop(world, "paagency", "paagency_PA_202402_outcomes.csv", broken)
    assert world.ingest().exit_code == 1
    # Nothing reached the warehouse: the build has nothing new to build (skipped) ...
    assert world.build(FEB).runs == []
    assert world.report(FEB)["approvals"] == before_numbers["approvals"]
    # ... and a forced one makes a materialization whose explanation names the rejected file.
    world.build(FEB, force=True)
    assert world.report(FEB)["approvals"] == before_numbers["approvals"]

    e = world.explain(FEB)
    assert not any(m.changed for m in e.metrics)
    assert not e.rows
    assert [item["file"] for item in e.rejected_files] == ["paagency_PA_202402_outcomes.csv"]
    text = to_markdown(e)
    assert "quarantined" in text and "kept its previous rows" in text


def test_resent_file_of_one_partner_is_named_with_its_partner_and_the_other_kept(world):
    """January's eligibility holds two partners' files; the community partner re-sends its own
    (one person fewer). Explain names that partner's file before and after, and the state
    agency's file as unchanged; the report counts distinct people across both."""
    name = "communitycare_PA_202401_eligibility.csv"
    original = (world.inbox / "processed" / "communitycare" / name).read_text()
    lines = original.splitlines(keepends=True)
    before_numbers = world.report(JAN)
    agency_rows = world.resources["warehouse"].query(
        "SELECT * FROM raw.eligibility WHERE month = ? AND _partner = 'paagency' ORDER BY ALL",
        [JAN])
    _drop(world, "communitycare", name, "".join(lines[:-1]))
    assert world.ingest().exit_code == 0
    world.build(JAN)
    after_agency = world.resources["warehouse"].query(
        "SELECT * FROM raw.eligibility WHERE month = ? AND _partner = 'paagency' ORDER BY ALL",
        [JAN])
    assert after_agency.equals(agency_rows)  # the other partner's rows were not touched
    counts = world.resources["warehouse"].query(
        "SELECT _partner, count(*) AS n FROM raw.eligibility WHERE month = ? GROUP BY ALL "
        "ORDER BY ALL", [JAN])
    assert counts["_partner"].tolist() == ["communitycare", "paagency"]
    assert int(counts["n"].iloc[0]) == len(lines) - 2  # header and the dropped row
    assert world.report(JAN)["people_eligible"] <= before_numbers["people_eligible"]

    e = world.explain(JAN)
    feed = next(u for u in e.upstream if u.key == dg.AssetKey(["raw", "eligibility"]))
    [(partner, was, now)] = feed.file_changes
    assert partner == "communitycare" and was["file"] == now["file"] == name
    assert was["sha256"] != now["sha256"]
    text = to_markdown(e)
    assert "partner communitycare:" in text
    assert "same source file `paagency_PA_202401_eligibility.csv` (paagency)" in text


def test_as_of_reproduces_a_past_number(world):
    r = world.resources
    result = reproduce(world.instance, world.defs.resolve_asset_graph(), r["lake"], r["dbt"],
                       world.settings.pii_key, REPORT, "PA", FEB, world.before_resend)
    assert result.matches, result.to_markdown()
    # The re-send changed approvals since: the reproduction is of the old number, not today's.
    assert result.recorded_values["approvals"] == world.report(FEB)["approvals"] + 1
    assert result.inputs["outcomes"].endswith("paagency_PA_202402_outcomes.csv")


def test_dbt_model_logic_change_is_named_and_no_file_blamed(world):
    project = world.root / "dbt_project_changed"
    shutil.copytree(world.settings.dbt_project_dir, project,
                    ignore=shutil.ignore_patterns("target", "logs"))
    model = project / "models" / "staging" / "stg_partners__outcomes.sql"
    sql = model.read_text()
    # A definition change: decisions for one program no longer count as outcomes.
    current = world.resources["warehouse"].query(
        "SELECT program, count(*) AS n FROM raw.outcomes WHERE state = 'PA' AND month = ? "
        "AND decision = 'approved' GROUP BY program ORDER BY n DESC, program", [FEB])
    program, dropped = current.iloc[0]["program"], int(current.iloc[0]["n"])
    model.write_text(f"select * from (\n{sql}\n) as outcomes where program <> '{program}'\n")
    changed = World(world.settings.home, dbt_project_dir=project)
    before_numbers = changed.report(FEB)
    changed.build(FEB)
    assert changed.report(FEB)["approvals"] == before_numbers["approvals"] - dropped
    e = changed.explain(FEB)
    text = to_markdown(e)
    assert "staging/stg_partners__outcomes" in text and "code version" in text
    assert not any(u.source_changed for u in e.upstream)  # no file is blamed
    rows = next(r for r in e.rows if r.metric == "approvals")
    [cause] = rows.causes
    assert cause.label.startswith("code change in") and "staging/stg_partners__outcomes" in cause.label
    assert len(cause.left) == dropped and not cause.entered
    assert cause.amount == rows.total == -dropped
    changed.instance.dispose()


def test_clear_errors(world):
    with pytest.raises(ExplainError, match="unknown table"):
        explain(world.instance, world.defs.resolve_asset_graph(), world.resources["lake"],
                "reports.nope", "PA", FEB)
    with pytest.raises(ExplainError, match="never materialized"):
        world.explain(dt.date(2023, 6, 1))
    with pytest.raises(ExplainError, match="only one"):
        world.explain(FEB, before=world.first_build - 3600)
