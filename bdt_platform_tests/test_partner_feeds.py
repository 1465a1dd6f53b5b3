"""Several partners per feed, and partners as configuration, through the real paths: the inbox
sensor over a real SFTP server (asyncssh on 127.0.0.1), ``bdt ingest`` on the local folder, the
DuckDB warehouse and the lake.

- two partners' files for one feed, state and month stand side by side in the partition; a
  re-sent file of one replaces only that partner's rows, and the partition's materialization
  lists every file it holds;
- a partner added to the registry (``bdt partners add`` or an edit of the file) is accepted at
  the next look, with no restart (the same definitions object, the same sensor);
- an unregistered partner, an unregistered feed and an unregistered state are each quarantined
  with their rule and what to add, and load once registered and released.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.filenames import drop_filename
from bdt_platform.inbox.ingest import ingest
from bdt_platform.inbox.partners import DEFAULT_REGISTRY, add_partner
from bdt_platform.inbox.quarantine import release
from bdt_platform.inbox.sensor import SENSOR_NAME
from bdt_platform.core.runs import instance_for
from bdt_platform.synthetic.generate import generate

from .conftest import TEST_PII_KEY, make_settings
from bdt_platform.synthetic.sftp_server import start_server

JAN = dt.date(2024, 1, 1)
KEY = parts.partition_key("PA", JAN)
OLD = time.time() - 7200


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """Contract-true PA 2024-01 files (both eligibility partners, outcomes), from two seeds:
    ``<partner>:v<seed>`` -> bytes."""
    found = {}
    for seed in (1, 2):
        where = tmp_path_factory.mktemp(f"seed{seed}")
        generate(where / "inbox", where / "casemgmt.sqlite", states=["PA"], months=[JAN],
                 scale=0.1, seed=seed, pii_key=TEST_PII_KEY)
        for path in (where / "inbox").glob("*/*_PA_202401_*.csv"):
            found[f"{path.name.split('_PA_')[0]}:{path.name.rsplit('_', 1)[1][:-4]}:v{seed}"] = \
                path.read_bytes()
    return found


def _rows(warehouse, partner: str | None = None):
    where = "" if partner is None else f" AND _partner = '{partner}'"
    return warehouse.query(
        "SELECT * EXCLUDE (_source_file) FROM raw.eligibility WHERE state = 'PA' AND month = ?"
        f"{where} ORDER BY ALL", [JAN])


def _registry_copy(tmp_path: Path) -> Path:
    path = tmp_path / "partners.yaml"
    shutil.copy(DEFAULT_REGISTRY, path)
    return path


class SensorWorld:
    """The definitions, instance and SFTP server of one test; ticks the real sensor."""

    def __init__(self, tmp_path: Path):
        self.server = start_server(tmp_path / "sftp")
        self.registry = _registry_copy(tmp_path)
        self.settings = make_settings(tmp_path / "home", BDT_PARTNERS=str(self.registry),
                                      **self.server.environ("/inbox"))
        from bdt_platform.definitions import build_definitions

        self.defs = build_definitions(self.settings)
        self.instance = instance_for(self.settings)
        self.cursor = None
        self.warehouse = self.defs.resources["warehouse"]

    def drop(self, partner: str, feed: str, data: bytes, state: str = "PA",
             mtime: float = OLD) -> str:
        name = drop_filename(partner, state, JAN, feed)
        self.server.drop(f"/inbox/{partner}/{name}", data, mtime=mtime)
        return name

    def tick_and_run(self) -> list[dg.ExecuteInProcessResult]:
        """One sensor tick, then each run it requested, in-process as the daemon would."""
        with dg.build_sensor_context(
                instance=self.instance, cursor=self.cursor, sensor_name=SENSOR_NAME,
                definitions=self.defs,
                resources={name: self.defs.resources[name]
                           for name in ("inbox", "lake", "partners")}) as context:
            result = self.defs.resolve_sensor_def(SENSOR_NAME).evaluate_tick(context)
        self.cursor = result.cursor
        runs = []
        for request in result.run_requests:
            runs.append(self.defs.resolve_job_def("ingest_feeds").execute_in_process(
                run_config=request.run_config, instance=self.instance,
                partition_key=request.partition_key, asset_selection=request.asset_selection,
                tags={**request.tags, RUN_KEY_TAG: request.run_key,
                      SENSOR_NAME_TAG: SENSOR_NAME}, raise_on_error=False))
        return runs

    def latest_metadata(self) -> dict:
        [record] = self.instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["raw", "eligibility"]), asset_partitions=[KEY]),
            limit=1).records
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}

    def close(self):
        self.instance.dispose()
        self.server.close()


@pytest.fixture
def sensor_world(tmp_path):
    world = SensorWorld(tmp_path)
    yield world
    world.close()


def test_two_partners_side_by_side_and_a_resend_replaces_only_its_own_rows(sensor_world, files):
    w = sensor_world
    w.drop("paagency", "eligibility", files["paagency:eligibility:v1"])
    w.drop("communitycare", "eligibility", files["communitycare:eligibility:v1"])
    runs = w.tick_and_run()
    assert len(runs) == 2 and all(run.success for run in runs)  # one run per partner's file
    both = _rows(w.warehouse)
    agency = _rows(w.warehouse, "paagency")
    community = _rows(w.warehouse, "communitycare")
    assert len(agency) and len(community) and len(both) == len(agency) + len(community)
    sources = {s["partner"]: s for s in w.latest_metadata()["sources"]}
    assert sorted(sources) == ["communitycare", "paagency"]
    assert sources["paagency"]["rows"] == len(agency)
    assert sources["communitycare"]["rows"] == len(community)

    # The community partner re-sends (other content): only its rows change, none duplicate.
    w.drop("communitycare", "eligibility", files["communitycare:eligibility:v2"],
           mtime=OLD + 60)
    [run] = w.tick_and_run()
    assert run.success
    assert _rows(w.warehouse, "paagency").equals(agency)
    resent = _rows(w.warehouse, "communitycare")
    assert not resent.equals(community)
    assert len(resent) == files["communitycare:eligibility:v2"].count(b"\n") - 1
    assert len(_rows(w.warehouse)) == len(agency) + len(resent)
    metadata = w.latest_metadata()
    sources = {s["partner"]: s for s in metadata["sources"]}
    assert metadata["loaded_files"] == [{"partner": "communitycare", "rows": len(resent),
                                         "file": sources["communitycare"]["file"]}]
    assert sources["paagency"]["rows"] == len(agency)  # kept from the earlier materialization
    assert metadata["dagster/row_count"] == len(agency) + len(resent)
    # The state agency re-sends the same file: its rows are replaced by the same rows.
    w.drop("paagency", "eligibility", files["paagency:eligibility:v1"], mtime=OLD + 120)
    [run] = w.tick_and_run()
    assert run.success and _rows(w.warehouse, "paagency").equals(agency)
    assert len(_rows(w.warehouse)) == len(agency) + len(resent)


def test_a_partner_registered_by_editing_the_file_is_accepted_at_the_next_tick(sensor_world,
                                                                                files):
    w = sensor_world
    data = files["communitycare:eligibility:v1"]
    first = w.drop("newpartner", "eligibility", data)
    assert w.tick_and_run() == []
    reason = json.loads((Path(w.settings.lake) / "quarantine" / "newpartner" /
                         f"{first}.reason.json").read_text())
    assert [f["rule"] for f in reason["failures"]] == ["unknown_partner"]
    assert "bdt partners add newpartner --feed eligibility --states PA" in reason["summary"]

    # Registered by an edit of the file in force (as a reviewed change would): the same
    # definitions and sensor accept its next file.
    text = w.registry.read_text()
    w.registry.write_text(text + "- name: newpartner\n  description: A new community partner\n"
                          "  feeds: [eligibility]\n  states: [PA, NJ]\n")
    w.drop("newpartner", "eligibility", data, mtime=OLD + 60)  # sent again: a new delivery
    [run] = w.tick_and_run()
    assert run.success
    assert len(_rows(w.warehouse, "newpartner")) == data.count(b"\n") - 1

    # A broken edit changes nothing: the tick is skipped with the reason, no file is refused.
    w.registry.write_text(text + "- name: Bad Name\n  feeds: [eligibility]\n")
    w.drop("paagency", "eligibility", files["paagency:eligibility:v1"], mtime=OLD + 120)
    with dg.build_sensor_context(
            instance=w.instance, cursor=w.cursor, sensor_name=SENSOR_NAME, definitions=w.defs,
            resources={n: w.defs.resources[n] for n in ("inbox", "lake", "partners")}) as ctx:
        skipped = w.defs.resolve_sensor_def(SENSOR_NAME).evaluate_tick(ctx)
    assert not skipped.run_requests
    assert "partner registry unusable" in skipped.skip_message
    assert f"{w.registry}:" in skipped.skip_message and "bad partner name" in skipped.skip_message
    assert not (Path(w.settings.lake) / "quarantine" / "paagency").exists()


@pytest.mark.parametrize("partner, feed, state, rule, fix", [
    ("newpartner", "eligibility", "PA", "unknown_partner",
     dict(name="newpartner", feeds=["eligibility"], states=["PA"])),
    ("mailvendor", "eligibility", "PA", "feed_not_registered",
     dict(name="mailvendor", feeds=["eligibility"], states=None)),
    ("paagency", "eligibility", "NJ", "state_not_registered",
     dict(name="paagency", feeds=["eligibility"], states=["NJ"])),
])
def test_unregistered_partner_feed_or_state_is_quarantined_then_loads_once_registered(
        tmp_path, files, partner, feed, state, rule, fix):
    """``bdt ingest`` on the local folder: the file is quarantined with its rule and what to
    add; after registering (``add_partner``, what ``bdt partners add`` calls) and releasing it
    from quarantine, it loads into its partition."""
    from bdt_platform.definitions import build_definitions

    registry = _registry_copy(tmp_path)
    settings = make_settings(tmp_path / "home", BDT_PARTNERS=str(registry))
    defs = build_definitions(settings)
    instance = instance_for(settings)
    r = defs.resources
    try:
        data = files["communitycare:eligibility:v1"].replace(b",PA,", f",{state},".encode())
        name = drop_filename(partner, state, JAN, feed)
        path = Path(settings.inbox) / partner / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        refused = ingest(defs, instance, r["inbox"], r["lake"], r["warehouse"], None,
                         settle_seconds=0, echo=lambda _: None)
        [result] = refused.files
        assert result.status == "quarantined" and refused.exit_code == 1
        reason = json.loads((Path(settings.lake) / "quarantine" / partner /
                             f"{name}.reason.json").read_text())
        assert [f["rule"] for f in reason["failures"]] == [rule]
        assert "bdt partners add" in reason["summary"] and reason["feed"] == feed
        assert not r["warehouse"].table_exists("raw.eligibility")

        add_partner(registry, fix["name"], fix["feeds"], fix["states"])
        released = release(defs, instance, r["inbox"], r["lake"], r["warehouse"],
                           f"quarantine/{partner}/{name}", echo=lambda _: None)
        assert released.exit_code == 0
        loaded = r["warehouse"].query(
            "SELECT state, _partner, count(*) AS n FROM raw.eligibility GROUP BY ALL")
        assert loaded.values.tolist() == [[state, partner, data.count(b"\n") - 1]]
        assert not (Path(settings.lake) / "quarantine" / partner / name).exists()
    finally:
        instance.dispose()
