"""``bdt prune``: the event log of old runs shrinks, and what ``bdt explain`` reads stays.

One world: PA x January and February ingested and built without February's mail-returns
file, then the file arrives and the partition is ingested and built again, so explain has two
materializations to compare (the file, the rows, the numbers that changed). Pruning every run
deletes every log line, step and engine event; explain says exactly what it said before, every
materialization and check evaluation is still there, and the runs keep their tags.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import instance_for
from bdt_platform.explain.engine import explain
from bdt_platform.explain.render import to_markdown
from bdt_platform.ops import retention
from bdt_platform.synthetic import generate

from .conftest import cli_environment, ingest_and_build, make_settings

JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
LATE = "mailvendor_PA_202402_mailreturns.csv"
REPORT = dg.AssetKey(["reports", "outcomes"])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from bdt_platform.definitions import build_definitions

    root = tmp_path_factory.mktemp("retention")
    settings = make_settings(root / "home")
    staging = root / "generated"
    generate(staging, settings.casemgmt_sqlite_path, states=["PA"], months=[JAN, FEB], scale=0.1,
             seed=11, pii_key=settings.pii_key)
    late = staging / "mailvendor" / LATE
    late_bytes = late.read_bytes()
    late.unlink()
    shutil.copytree(staging, settings.inbox, dirs_exist_ok=True)
    defs = build_definitions(settings)
    instance = instance_for(settings)
    first = ingest_and_build(defs, instance)
    (Path(settings.inbox) / "mailvendor" / LATE).write_bytes(late_bytes)
    second = ingest_and_build(defs, instance)
    for ingested, built, lines in (first, second):
        assert ingested.exit_code == 0 and built.exit_code == 0, lines
    yield settings, defs, instance
    instance.dispose()


def _explained(defs, instance) -> str:
    return to_markdown(explain(instance, defs.resolve_asset_graph(), defs.resources["lake"],
                               "reports.outcomes", "PA", FEB))


def _events(instance) -> list[dg.EventLogEntry]:
    return [event for record in instance.get_run_records()
            for event in instance.all_logs(record.dagster_run.run_id)]


def _materializations(instance, defs) -> list[tuple[str, int]]:
    keys = sorted(defs.resolve_asset_graph().get_all_asset_keys(), key=str)
    return sorted((key.to_user_string(), record.storage_id) for key in keys
                  for record in instance.fetch_materializations(key, limit=1000).records)


def test_pruning_old_runs_keeps_what_explain_reads(world, monkeypatch, capsys):
    from bdt_platform import cli

    settings, defs, instance = world
    explained = _explained(defs, instance)
    assert LATE in explained and "pieces_mailed" in explained
    events = _events(instance)
    materializations = _materializations(instance, defs)
    checks = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["raw", "mailreturns"]), "contract"), limit=50)
    runs = {r.dagster_run.run_id: r.dagster_run.tags for r in instance.get_run_records()}
    assert len(runs) >= 4 and len(events) > 200
    # Log lines, step starts/successes, outputs and inputs handled, engine events: a third of
    # the rows here, where each run materializes many partitions (more in runs of few).
    prunable = [e for e in events if not e.is_dagster_event
                or e.dagster_event_type.value not in retention.KEPT_EVENT_TYPES]
    assert len(prunable) > 300

    # Runs that ended less than a day ago are not touched.
    assert retention.prune(instance, 1).runs == 0
    assert len(_events(instance)) == len(events)

    cli_environment(monkeypatch, settings.home, settings.partners_path)
    assert cli.main(["prune", "--older-than", "0", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert f"{len(runs)} run(s)" in dry and f"would delete {len(prunable):,} event(s)" in dry
    assert len(_events(instance)) == len(events)  # a dry run deletes nothing

    assert cli.main(["prune", "--older-than", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(runs)} run(s)" in printed and "deleted" in printed
    left = _events(instance)
    assert f"deleted {len(prunable):,} event(s)" in printed
    assert len(left) == len(events) - len(prunable)
    assert {e.dagster_event_type.value for e in left if e.dagster_event} <= \
        retention.KEPT_EVENT_TYPES
    assert all(e.is_dagster_event for e in left)  # no log lines left

    # What explain and the UI's asset history read is all there.
    assert _materializations(instance, defs) == materializations
    assert _explained(defs, instance) == explained
    after = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(["raw", "mailreturns"]), "contract"), limit=50)
    assert checks and [(c.id, c.status, c.event.timestamp) for c in after] == [
        (c.id, c.status, c.event.timestamp) for c in checks]
    assert {r.dagster_run.run_id: r.dagster_run.tags for r in instance.get_run_records()} == runs
    partition = parts.partition_key("PA", FEB)
    assert len(instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=REPORT, asset_partitions=[partition]), limit=10
    ).records) == 2
    # bdt explain itself, from the command line, on the pruned instance.
    assert cli.main(["explain", "reports.outcomes", "--state", "PA", "--month", "2024-02"]) == 0
    assert LATE in capsys.readouterr().out

    # Each run is pruned once.
    assert retention.prune(instance, 0).runs == 0


def test_bad_usage_is_exit_2(world, monkeypatch, capsys):
    from bdt_platform import cli

    settings, _, _ = world
    cli_environment(monkeypatch, settings.home, settings.partners_path)
    assert cli.main(["prune", "--older-than", "-1"]) == 2
    assert "--older-than must be 0 days or more" in capsys.readouterr().err
