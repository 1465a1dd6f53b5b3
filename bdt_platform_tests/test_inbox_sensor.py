"""The inbox sensor: its pure decisions, then real ticks against a real SFTP server.

The integration tests evaluate ``inbox_sensor`` with ``build_sensor_context`` against an asyncssh
server on 127.0.0.1 (key auth, known_hosts), execute its run requests in-process the way the
daemon would launch them (same run config, partition, asset selection and run-key tags), and
check the rows in DuckDB, the lake and the files left on the server.
"""

import datetime as dt
import gc
import gzip
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.filenames import drop_filename
from bdt_platform.core.inbox_interface import InboxFile
from bdt_platform.inbox.folder import FolderInbox
from bdt_platform.inbox.sensor import (INTERVAL_SECONDS, SENSOR_NAME, InboxCursor, decide,
                                       evaluate_inbox, fingerprint)
from bdt_platform.inbox.sftp import SftpInbox
from bdt_platform.synthetic import generate

from .conftest import make_settings
from bdt_platform.synthetic.sftp_server import SftpTestServer, start_server

NOW = 1_800_000_000.0
JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
ELIGIBILITY = "communitycare/" + drop_filename("communitycare", "PA", JAN, "eligibility")


def f(path: str, size: int = 10, age: float = 3600, done: bool = False) -> InboxFile:
    folder, name = path.split("/")
    return InboxFile(folder, name, size, NOW - age, has_done_marker=done)


# -- pure decisions ---------------------------------------------------------------------------------

def test_growing_file_waits_until_its_size_holds():
    cursor = InboxCursor()
    sizes = [100, 250, 250]
    decisions = []
    for tick, size in enumerate(sizes):
        decision = decide([f(ELIGIBILITY, size, age=5)], cursor, now=NOW + tick * 30)
        decisions.append(decision)
        cursor = decision.cursor
    assert [len(d.requests) for d in decisions] == [0, 0, 1]
    assert decisions[0].cursor.waiting == {ELIGIBILITY: 100}
    assert decisions[1].cursor.waiting == {ELIGIBILITY: 250}
    assert decisions[2].cursor.waiting == {}


def test_done_marker_means_complete_and_settled_files_need_no_second_look():
    fresh = decide([f(ELIGIBILITY, age=1, done=True)], InboxCursor(), now=NOW)
    assert len(fresh.requests) == 1
    settled = decide([f(ELIGIBILITY, age=3600)], InboxCursor(), now=NOW)
    assert len(settled.requests) == 1 and settled.cursor.waiting == {}


def test_request_names_partition_feed_and_file_identity():
    file = f(ELIGIBILITY)
    [request] = decide([file], InboxCursor(), now=NOW).requests
    run = request.run_request()
    assert run.run_key == file.identity == f"{ELIGIBILITY}:10:{int(NOW - 3600)}"
    assert run.partition_key == "2024-01-01|PA"
    assert run.asset_selection == [dg.AssetKey(["raw", "eligibility"])]
    assert run.run_config == {"ops": {"raw__eligibility": {"config": {
        "files": {"2024-01-01|PA": [{"path": ELIGIBILITY, "received_at": NOW - 3600}]},
        "only_listed": True}}}}


def test_a_file_is_requested_once_while_it_stays_and_forgotten_once_it_leaves():
    file = f(ELIGIBILITY, age=60, done=True)
    first = decide([file], InboxCursor(), now=NOW)
    assert len(first.requests) == 1
    assert first.cursor.kept == {fingerprint(file.identity)}
    # Still there (run in flight, or a read-only server): not requested again, however long.
    second = decide([file], InboxCursor.parse(first.cursor.dump()), now=NOW + 30)
    assert second.requests == [] and second.already_handled == 1
    assert decide([file], second.cursor, now=NOW + 86400).requests == []
    # Gone (moved to processed/): nothing kept.
    gone = decide([], second.cursor, now=NOW + 60)
    assert gone.cursor == InboxCursor()
    # The same path re-sent (new size and time) is a new delivery.
    resent = f(ELIGIBILITY, size=99, age=30, done=True)
    assert len(decide([resent], second.cursor, now=NOW + 60).requests) == 1


def test_a_late_file_with_an_old_timestamp_is_still_landed():
    """``put -p`` keeps the partner's own mtime, and a rename keeps the upload's: arrival order
    is not mtime order, so nothing is skipped for being old."""
    landed = f(ELIGIBILITY, age=3600)
    cursor = decide([landed], InboxCursor(), now=NOW).cursor
    late = f("communitycare/" + drop_filename("communitycare", "PA", FEB, "eligibility"),
             age=30 * 86400)
    decision = decide([landed, late], cursor, now=NOW + 30)
    assert [r.newest.file for r in decision.requests] == [late]


def test_two_files_for_one_partition_in_one_tick_newest_wins():
    older = f(ELIGIBILITY, age=7200)
    newer = f(ELIGIBILITY + ".gz", age=3600)
    [request] = decide([newer, older], InboxCursor(), now=NOW).requests
    assert [d.file for d in request.drops] == [older, newer]
    assert request.run_key == newer.identity
    files = request.run_config()["ops"]["raw__eligibility"]["config"]["files"]
    assert [ref["path"] for ref in files["2024-01-01|PA"]] == [older.path, newer.path]


def test_a_late_file_older_than_the_landed_one_is_not_landed_over_it():
    landed = f(ELIGIBILITY, age=600, done=True)
    cursor = decide([landed], InboxCursor(), now=NOW).cursor
    late = f(ELIGIBILITY + ".gz", age=900, done=True)  # arrives later, but is older
    decision = decide([landed, late], cursor, now=NOW + 30)
    assert decision.requests == [] and [d.file for d in decision.superseded] == [late]
    again = decide([landed, late], decision.cursor, now=NOW + 60)
    assert again.requests == [] and again.superseded == []


def test_bad_names_are_quarantined_once_complete_and_never_block_others():
    bad = [f("communitycare/communitycare_XX_202401_eligibility.csv"),
           f("communitycare/communitycare_PA_202413_eligibility.csv"),
           f("communitycare/communitycare_PA_202401_bogus.csv"),
           f("nobody/nobody_PA_202401_eligibility.csv"),
           f("communitycare/commu nity$.csv")]
    growing = f("statehhs/whatever.txt", age=1)
    decision = decide([*bad, growing, f(ELIGIBILITY)], InboxCursor(), now=NOW)
    assert len(decision.requests) == 1
    reasons = dict((file.path, reason) for file, reason in decision.quarantine)
    assert set(reasons) == {file.path for file in bad}
    assert "unknown state 'XX'" in reasons[bad[0].path]
    assert "bad month '202413'" in reasons[bad[1].path]
    assert "unknown feed 'bogus'" in reasons[bad[2].path]
    assert "unknown partner 'nobody'" in reasons[bad[3].path]
    assert "does not match" in reasons[bad[4].path]
    assert decision.waiting == [growing]
    assert decide([*bad, f(ELIGIBILITY)], decision.cursor, now=NOW + 30).quarantine == []


def test_cap_defers_the_rest_to_the_next_tick():
    files = [f("communitycare/" + drop_filename("communitycare", state, JAN, "eligibility"),
               age=10_000 + i) for i, state in enumerate(parts.STATES[:5])]
    first = decide(files, InboxCursor(), now=NOW, max_requests=2)
    assert len(first.requests) == 2 and len(first.deferred) == 3
    second = decide(files, first.cursor, now=NOW + 30, max_requests=2)
    third = decide(files, second.cursor, now=NOW + 60, max_requests=2)
    requested = [r.newest.file for d in (first, second, third) for r in d.requests]
    assert sorted(requested, key=lambda x: x.name) == sorted(files, key=lambda x: x.name)


class WatchedFolderInbox(FolderInbox):
    """A real folder inbox that notes whether the garbage collector ran while it was listed."""

    collector_on_while_listing: list[bool] = []

    def list_files(self):
        self.collector_on_while_listing.append(gc.isenabled())
        return super().list_files()


@pytest.mark.parametrize("collector_on_before", [True, False])
def test_a_tick_lists_and_decides_with_the_collector_paused(tmp_path, collector_on_before):
    """Listing and deciding allocate many small objects and no cycles: the tick pauses the
    cyclic collector around them (each collection would walk the whole code server's heap),
    and leaves it as it found it."""
    from bdt_platform.storage.lake import LakeResource

    path = tmp_path / "inbox" / ELIGIBILITY
    path.parent.mkdir(parents=True)
    path.write_bytes(b"header\n")
    os.utime(path, (NOW - 3600, NOW - 3600))
    inbox = WatchedFolderInbox(root=str(tmp_path / "inbox"))
    inbox.collector_on_while_listing.clear()
    (gc.enable if collector_on_before else gc.disable)()
    try:
        result = evaluate_inbox(inbox, LakeResource(root=str(tmp_path / "lake")), None, now=NOW)
        assert gc.isenabled() == collector_on_before
    finally:
        gc.enable()
    assert inbox.collector_on_while_listing == [False]
    assert [r.partition_key for r in result.run_requests] == ["2024-01-01|PA"]


def test_cursor_stays_small():
    files = [f("communitycare/" + drop_filename("communitycare", state, parts.add_months(JAN, m),
                                                "eligibility"), age=60 + m, done=True)
             for state in parts.STATES for m in range(40)]
    first = decide(files, InboxCursor(), now=NOW, max_requests=len(files))
    assert len(first.requests) == len(files) == 2040
    # Landed and moved away (writable server): nothing to remember.
    assert decide([], first.cursor, now=NOW + 30).cursor.dump() == '{"v":1,"waiting":{},"kept":[]}'
    # Left in place (read-only server): at most MAX_KEPT fingerprints, plus a high-water mark.
    kept = decide(files, first.cursor, now=NOW + 30, max_kept=500)
    assert kept.requests == [] and kept.already_handled == len(files)
    hwm = kept.cursor.hwm
    newer = {fingerprint(x.identity) for x in files if x.mtime >= hwm}
    assert kept.cursor.kept == newer and 500 <= len(newer) < 500 + len(parts.STATES)
    assert len(kept.cursor.dump()) < 16 * 500 + 100
    later = decide(files, kept.cursor, now=NOW + 60, max_kept=500)
    assert later.requests == [] and later.cursor == kept.cursor
    # Cleared out on the server: the mark is dropped too.
    recent = [x for x in files if x.mtime >= hwm][:3]
    cleared = decide(recent, later.cursor, now=NOW + 90, max_kept=500)
    assert cleared.requests == [] and cleared.cursor.hwm is None and len(cleared.cursor.kept) == 3
    with pytest.raises(ValueError, match="cursor"):
        InboxCursor.parse("{not json")


# -- the sensor against a real SFTP server --------------------------------------------------------

@dataclass
class World:
    server: SftpTestServer
    settings: object
    defs: dg.Definitions
    instance: dg.DagsterInstance
    inbox: SftpInbox

    def tick(self, cursor: str | None = None, inbox: SftpInbox | None = None):
        with dg.build_sensor_context(
                instance=self.instance, cursor=cursor, sensor_name=SENSOR_NAME, definitions=self.defs,
                resources={"inbox": inbox or self.inbox,
                           "lake": self.defs.resources["lake"],
                           "partners": self.defs.resources["partners"]}) as context:
            return self.defs.resolve_sensor_def(SENSOR_NAME).evaluate_tick(context)

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """Launch a sensor run request in-process, tagged as the daemon would tag it."""
        return self.defs.resolve_job_def("ingest_feeds").execute_in_process(
            run_config=request.run_config, instance=self.instance,
            partition_key=request.partition_key, asset_selection=request.asset_selection,
            tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: SENSOR_NAME},
            raise_on_error=False)

    def rows(self, state="PA", month=JAN) -> pd.DataFrame:
        return self.defs.resources["warehouse"].query(
            "SELECT record_id, _source_file FROM raw.eligibility WHERE state = ? AND month = ? "
            "ORDER BY record_id", [state, month])

    def on_server(self, folder: str) -> list[str]:
        base = self.server.root / folder.strip("/")
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory) -> dict[str, bytes]:
    """Contract-true eligibility files for PA x Jan/Feb 2024 from two seeds (v1, v2)."""
    files = {}
    for seed in (1, 2):
        work = tmp_path_factory.mktemp(f"seed{seed}")
        summary = generate(work / "inbox", work / "cm.sqlite", states=["PA"], months=[JAN, FEB],
                           scale=0.1, seed=seed, pii_key="k")
        for path in summary.files:
            if "eligibility" in path.name:
                files[f"v{seed}:{path.name}"] = path.read_bytes()
    return files


def v(deliveries, version: int, month: dt.date = JAN) -> bytes:
    return deliveries[f"v{version}:{drop_filename('communitycare', 'PA', month, 'eligibility')}"]


def record_ids(data: bytes) -> list[str]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return sorted(pd.read_csv(io.BytesIO(data), dtype=str)["record_id"])


@pytest.fixture
def world(tmp_path) -> World:
    from bdt_platform.definitions import build_definitions
    from bdt_platform.core.runs import instance_for

    server = start_server(tmp_path / "sftp")
    settings = make_settings(tmp_path / "home", **server.environ("/inbox"))
    defs = build_definitions(settings)
    instance = instance_for(settings)
    yield World(server, settings, defs, instance, defs.resources["inbox"])
    instance.dispose()
    server.close()


OLD = time.time() - 3600  # settled: complete on first sight


def test_new_file_one_run_then_no_run(world, deliveries):
    data = v(deliveries, 1)
    world.server.drop(f"/inbox/{ELIGIBILITY}", data, mtime=OLD)
    first = world.tick()
    [request] = first.run_requests
    assert request.partition_key == "2024-01-01|PA"
    assert request.asset_selection == [dg.AssetKey(["raw", "eligibility"])]
    assert request.run_key == f"{ELIGIBILITY}:{len(data)}:{int(OLD)}"
    assert request.run_config["ops"]["raw__eligibility"]["config"]["only_listed"] is True
    # Before the run has moved the file: the next tick does not ask again.
    assert world.tick(first.cursor).run_requests == []

    result = world.execute(request)
    assert result.success
    assert world.rows()["record_id"].tolist() == record_ids(data)
    assert world.on_server("/inbox") == [f"processed/{ELIGIBILITY}"]
    archived = list((Path(world.settings.lake) / "archive/eligibility").rglob("*.csv"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in archived] == [
        hashlib.sha256(data).hexdigest()]
    again = world.tick(first.cursor)
    assert again.run_requests == [] and "0 run(s)" in again.skip_message
    run = world.instance.get_runs(dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}))
    assert len(run) == 1 and run[0].tags[SENSOR_NAME_TAG] == SENSOR_NAME


def test_growing_file_waits_for_a_later_tick(world, deliveries):
    data = v(deliveries, 1)
    half = len(data) // 2
    path = f"/inbox/{ELIGIBILITY}"
    world.server.drop(path, data[:half])  # being written: modified just now
    first = world.tick()
    assert first.run_requests == [] and "1 waiting" in first.skip_message
    with world.server.client() as partner:  # the upload continues
        with partner.open(path, "ab") as handle:
            handle.write(data[half:])
    second = world.tick(first.cursor)
    assert second.run_requests == [] and json.loads(second.cursor)["waiting"] == {
        ELIGIBILITY: len(data)}
    third = world.tick(second.cursor)
    [request] = third.run_requests
    assert world.execute(request).success
    assert world.rows()["record_id"].tolist() == record_ids(data)


def test_done_marker_is_honoured_and_cleaned_up(world, deliveries):
    world.server.drop(f"/inbox/{ELIGIBILITY}", v(deliveries, 1), done_marker=True)
    [request] = world.tick().run_requests  # fresh, but the marker says it is complete
    assert world.execute(request).success
    assert world.on_server("/inbox") == [f"processed/{ELIGIBILITY}"]  # marker removed


def test_resend_replaces_rows_and_newest_of_one_tick_wins(world, deliveries):
    world.server.drop(f"/inbox/{ELIGIBILITY}", v(deliveries, 1), mtime=OLD)
    feb = ELIGIBILITY.replace("202401", "202402")
    world.server.drop(f"/inbox/{feb}", v(deliveries, 1, FEB), mtime=OLD)
    first = world.tick()
    assert len(first.run_requests) == 2
    for request in first.run_requests:
        assert world.execute(request).success
    feb_rows = world.rows(month=FEB)
    assert world.rows()["record_id"].tolist() == record_ids(v(deliveries, 1))

    # Re-send for January: the same name again, and a gzipped one newer still, in one tick.
    world.server.drop(f"/inbox/{ELIGIBILITY}", v(deliveries, 2), mtime=OLD + 60)
    newest = gzip.compress(v(deliveries, 2)[: v(deliveries, 2).rindex(b"\n", 0, 3000) + 1])
    world.server.drop(f"/inbox/{ELIGIBILITY}.gz", newest, mtime=OLD + 120)
    [request] = world.tick(first.cursor).run_requests
    assert request.run_key.startswith(f"{ELIGIBILITY}.gz:")
    assert world.execute(request).success
    rows = world.rows()
    assert rows["record_id"].tolist() == record_ids(newest)
    assert set(rows["_source_file"]) == {ELIGIBILITY.split("/")[1] + ".gz"}
    pd.testing.assert_frame_equal(world.rows(month=FEB), feb_rows)  # untouched
    archive = Path(world.settings.lake) / "archive/eligibility/month=2024-01/state=PA"
    assert len(list(archive.iterdir())) == 3  # v1, v2 and the gzipped re-send, all kept
    assert world.on_server("/inbox") == sorted(
        f"processed/{p}" for p in (ELIGIBILITY, ELIGIBILITY + ".gz", feb))


def test_bad_names_are_quarantined_with_a_reason(world, deliveries):
    bad = {"communitycare/communitycare_ZZ_202401_eligibility.csv": "unknown state 'ZZ'",
           "communitycare/communitycare_PA_202400_eligibility.csv": "bad month '202400'",
           "communitycare/communitycare_PA_202401_flyers.csv": "unknown feed 'flyers'",
           "stranger/stranger_PA_202401_eligibility.csv": "unknown partner 'stranger'",
           "communitycare/elig ibility (1).csv": "does not match"}
    for path in bad:
        world.server.drop(f"/inbox/{path}", b"anything\n", mtime=OLD)
    world.server.drop(f"/inbox/{ELIGIBILITY}", v(deliveries, 1), mtime=OLD)
    first = world.tick()
    [request] = first.run_requests
    assert request.partition_key == "2024-01-01|PA"
    quarantine = Path(world.settings.lake) / "quarantine"
    for path, reason in bad.items():
        folder, name = path.split("/")
        assert (quarantine / folder / name).read_bytes() == b"anything\n"
        why = json.loads((quarantine / folder / f"{name}.reason.json").read_text())
        assert reason in why["failures"][0]["message"] and why["inbox_path"] == path
    assert world.on_server("/inbox/processed") == sorted(bad)
    assert world.tick(first.cursor).run_requests == []
    assert world.execute(request).success and len(world.rows()) > 0


def test_outage_gives_skip_reason_then_recovers(world, deliveries):
    world.server.drop(f"/inbox/{ELIGIBILITY}", v(deliveries, 1), mtime=OLD)
    cursor = world.tick().cursor
    world.server.stop()
    down = world.tick(cursor)
    assert down.run_requests == [] and down.cursor == cursor  # cursor untouched
    assert down.skip_message.startswith("inbox unavailable (sftp://bdt@127.0.0.1:")
    assert "cannot reach" in down.skip_message and "\n" not in down.skip_message
    world.server.start()
    feb = ELIGIBILITY.replace("202401", "202402")
    world.server.drop(f"/inbox/{feb}", v(deliveries, 1, FEB), mtime=OLD)
    [request] = world.tick(down.cursor).run_requests  # January was already requested
    assert request.partition_key == "2024-02-01|PA"


def test_server_lost_during_the_run_deletes_nothing_and_rerun_lands(world, deliveries,
                                                                   monkeypatch):
    from bdt_platform.core import retries

    # The run retries a lost server RETRIES times before it fails (5, 10, 20 s apart in the
    # product); the waits' length is not what is tested here, so they are cut to a blink.
    monkeypatch.setattr(retries, "FIRST_WAIT_SECONDS", 0.05)
    data = v(deliveries, 1)
    world.server.drop(f"/inbox/{ELIGIBILITY}", data, mtime=OLD)
    [request] = world.tick().run_requests
    world.server.stop()
    failed = world.execute(request)
    assert not failed.success
    # Every retry was taken, for the lost server, before the run gave up.
    up_for_retry = [event for event in failed.all_events
                    if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(up_for_retry) == retries.RETRIES
    assert {event.event_specific_data.error.cause.cls_name
            for event in up_for_retry} == {"InboxUnavailable"}
    assert world.server.local(f"/inbox/{ELIGIBILITY}").read_bytes() == data
    assert not world.defs.resources["warehouse"].table_exists("raw.eligibility")
    world.server.start()
    assert world.execute(request).success  # re-execution once the server is back
    assert world.rows()["record_id"].tolist() == record_ids(data)


def test_unknown_host_key_gives_skip_reason(world, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    inbox = SftpInbox.from_url(world.server.url(), str(world.server.client_key_file), str(empty))
    result = world.tick(inbox=inbox)
    assert result.run_requests == [] and "not in" in result.skip_message
    assert "refusing to connect" in result.skip_message and empty.read_text() == ""


def test_read_only_server_files_stay_and_are_not_landed_twice(world, deliveries):
    data = v(deliveries, 1)
    world.server.drop(f"/inbox/{ELIGIBILITY}", data, mtime=time.time() - 600)
    world.server.read_only = True
    first = world.tick()
    [request] = first.run_requests
    assert world.execute(request).success
    assert world.rows()["record_id"].tolist() == record_ids(data)
    assert world.on_server("/inbox") == [ELIGIBILITY]  # left in place
    second = world.tick(first.cursor)
    assert second.run_requests == [] and "1 already handled" in second.skip_message
    assert json.loads(second.cursor)["kept"] == [fingerprint(request.run_key)]

    # Another account drops a file for the same partition that is older than the landed one:
    # archived in the lake, not loaded over it, and not looked at again.
    late = world.server.local(f"/inbox/{ELIGIBILITY}.gz")
    late.write_bytes(gzip.compress(v(deliveries, 2)))
    os.utime(late, (time.time() - 7200,) * 2)
    third = world.tick(second.cursor)
    assert third.run_requests == [] and "1 superseded" in third.skip_message
    archive = Path(world.settings.lake) / "archive/eligibility/month=2024-01/state=PA"
    assert sorted(p.name.endswith(".gz") for p in archive.iterdir()) == [False, True]
    assert world.rows()["record_id"].tolist() == record_ids(data)
    assert "superseded" not in world.tick(third.cursor).skip_message


def test_sensor_is_defined_and_works_on_the_folder_inbox(platform, deliveries):
    """The embedded default: the same sensor over ``$BDT_HOME/inbox``."""
    settings, defs, instance = platform
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.job_name == "ingest_feeds"
    assert sensor.minimum_interval_seconds == INTERVAL_SECONDS
    inbox = Path(settings.inbox)
    (inbox / "communitycare").mkdir(parents=True)
    (inbox / ELIGIBILITY).write_bytes(v(deliveries, 1))
    (inbox / "communitycare/stray.txt").write_bytes(b"?")
    for path in (inbox / "communitycare").iterdir():
        os.utime(path, (OLD, OLD))
    resources = {name: defs.resources[name] for name in ("inbox", "lake", "partners")}
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources,
                                 sensor_name=SENSOR_NAME) as context:
        result = sensor.evaluate_tick(context)
    [request] = result.run_requests
    assert request.partition_key == "2024-01-01|PA" and request.tags["bdt/inbox_file"] == ELIGIBILITY
    assert (Path(settings.lake) / "quarantine/communitycare/stray.txt.reason.json").exists()
    assert (inbox / "processed/communitycare/stray.txt").read_bytes() == b"?"
