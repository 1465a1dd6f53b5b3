"""The local Dagster instance: bdt's dagster.yaml and the pooled SQLite event log behind it.

Real SQLite files under a temp home, real Dagster instances, and a second process writing while
this one reads (as a run writes while the web server reads).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg

from bdt_platform.core.instance_storage import (KEPT_SHARDS, PooledSqliteEventLogStorage,
                                           PooledSqliteStorage)
from bdt_platform.core.runs import INSTANCE_CONFIG_MARK, instance_for
from bdt_platform_tests.conftest import make_settings

ASSET = dg.AssetKey(["feeds", "partner_eligibility_raw"])


def _materialize(instance: dg.DagsterInstance, partitions: list[str]) -> None:
    for partition in partitions:
        instance.report_runless_asset_event(dg.AssetMaterialization(
            asset_key=ASSET, partition=partition, metadata={"rows": dg.MetadataValue.int(3)}))


def _materialized_partitions(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(ASSET))


def _stock_instance(dagster_home: Path) -> dg.DagsterInstance:
    """Dagster's own SQLite storage over the same directory (what a hand-written dagster.yaml
    or a bare ``dagster dev`` pointed at the home would use)."""
    other = dagster_home.parent / "stock-config"
    other.mkdir(exist_ok=True)
    (other / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: \"{dagster_home}\"\n"
        "telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.from_config(str(other))


def test_bdt_writes_an_instance_config_with_the_pooled_storage(tmp_path):
    settings = make_settings(tmp_path / "home")
    instance = instance_for(settings)
    try:
        config = (settings.dagster_home / "dagster.yaml").read_text()
        assert config.startswith(INSTANCE_CONFIG_MARK)
        assert "PooledSqliteStorage" in config and "enabled: false" in config
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        _materialize(instance, ["NJ|2024-01", "NJ|2024-02"])
        assert _materialized_partitions(instance) == {"NJ|2024-01", "NJ|2024-02"}
    finally:
        instance.dispose()


def test_run_workers_and_the_web_server_get_the_same_storage(tmp_path):
    """Processes Dagster starts (run workers, the daemon) rebuild the instance from its ref."""
    instance = instance_for(make_settings(tmp_path / "home"))
    rebuilt = dg.DagsterInstance.from_ref(instance.get_ref())
    try:
        assert isinstance(rebuilt.event_log_storage, PooledSqliteEventLogStorage)
        _materialize(rebuilt, ["VT|2024-05"])
        assert _materialized_partitions(instance) == {"VT|2024-05"}
    finally:
        rebuilt.dispose()
        instance.dispose()


def test_an_earlier_bdt_config_is_upgraded_and_a_users_own_is_kept(tmp_path):
    earlier = make_settings(tmp_path / "earlier")
    earlier.dagster_home.mkdir(parents=True)
    (earlier.dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    instance_for(earlier).dispose()
    assert "PooledSqliteStorage" in (earlier.dagster_home / "dagster.yaml").read_text()

    moved = make_settings(tmp_path / "moved")
    moved.dagster_home.mkdir(parents=True)
    (moved.dagster_home / "dagster.yaml").write_text(
        (earlier.dagster_home / "dagster.yaml").read_text())
    instance_for(moved).dispose()
    assert str(moved.dagster_home) in (moved.dagster_home / "dagster.yaml").read_text()

    own = make_settings(tmp_path / "own")
    own.dagster_home.mkdir(parents=True)
    users = "telemetry:\n  enabled: false\nrun_retries:\n  enabled: true\n"
    (own.dagster_home / "dagster.yaml").write_text(users)
    instance = instance_for(own)
    try:
        assert (own.dagster_home / "dagster.yaml").read_text() == users
        assert not isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    finally:
        instance.dispose()


def test_history_reads_the_same_with_dagsters_stock_sqlite_storage(tmp_path):
    settings = make_settings(tmp_path / "home")
    pooled = instance_for(settings)
    _materialize(pooled, ["PA|2024-01", "PA|2024-02"])
    stock = _stock_instance(settings.dagster_home)
    try:
        assert _materialized_partitions(stock) == {"PA|2024-01", "PA|2024-02"}
        _materialize(stock, ["PA|2024-03"])
        assert _materialized_partitions(pooled) == {"PA|2024-01", "PA|2024-02", "PA|2024-03"}
    finally:
        stock.dispose()
        pooled.dispose()


def test_shards_run_in_wal_mode_with_normal_sync(tmp_path):
    instance = instance_for(make_settings(tmp_path / "home"))
    try:
        _materialize(instance, ["NJ|2024-01"])
        with instance.event_log_storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    finally:
        instance.dispose()


def test_a_long_lived_process_keeps_a_bounded_number_of_shards_open(tmp_path):
    settings = make_settings(tmp_path / "home")
    instance = instance_for(settings)
    try:
        storage = instance.event_log_storage
        run_ids = []
        for number in range(KEPT_SHARDS + 5):
            run = instance.create_run_for_job(dg.GraphDefinition(name="noop").to_job(),
                                              run_id=None)
            run_ids.append(run.run_id)
            instance.report_engine_event(f"event {number}", run)
        kept = storage.kept_shards()
        assert len(kept) <= KEPT_SHARDS
        assert kept[-1] == run_ids[-1]
        # A shard that was closed opens again on demand, with everything in it.
        assert [e.message for e in instance.all_logs(run_ids[0])] == ["event 0"]
    finally:
        instance.dispose()
    assert storage.kept_shards() == []


def test_a_run_writing_in_another_process_is_read_live(tmp_path):
    settings = make_settings(tmp_path / "home")
    reader = instance_for(settings)
    _materialize(reader, ["NY|2023-12"])  # the reader holds open connections from here on
    writer = textwrap.dedent(f"""
        import dagster as dg
        from bdt_platform.core.runs import instance_for
        from bdt_platform_tests.conftest import make_settings
        instance = instance_for(make_settings(__import__("pathlib").Path({str(tmp_path / "home")!r})))
        for month in range(1, 13):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=dg.AssetKey(["feeds", "partner_eligibility_raw"]),
                partition=f"NY|2024-{{month:02d}}"))
        instance.dispose()
    """)
    try:
        process = subprocess.Popen([sys.executable, "-c", writer])
        snapshots = []
        while process.poll() is None:
            snapshots.append(_materialized_partitions(reader))  # while the other one writes
        assert process.returncode == 0
        everything = _materialized_partitions(reader)
        assert everything == {"NY|2023-12"} | {f"NY|2024-{m:02d}" for m in range(1, 13)}
        # Every read saw a consistent prefix of the writes, never a stale or torn state.
        assert all("NY|2023-12" in seen and seen <= everything for seen in snapshots)
        assert isinstance(reader.event_log_storage, PooledSqliteEventLogStorage)
        assert PooledSqliteStorage.__name__ in (settings.dagster_home / "dagster.yaml").read_text()
    finally:
        reader.dispose()


def test_a_new_home_reads_alembics_migration_scripts_once(tmp_path):
    """Dagster checks or stamps the schema revision of each SQLite file it creates (runs,
    schedules, the index, each run's shard), and alembic read its ~90 migration scripts for
    each: 9 times for a new home and its first run. This process reads them once, and every
    file is still stamped at alembic's head."""
    script = textwrap.dedent(f"""
        import pathlib
        from alembic.script import ScriptDirectory
        loads = []
        load_revisions = ScriptDirectory._load_revisions
        def counted(self):
            loads.append(1)
            yield from load_revisions(self)
        ScriptDirectory._load_revisions = counted
        from bdt_platform.core.runs import instance_for
        from bdt_platform_tests.conftest import make_settings
        instance = instance_for(make_settings(pathlib.Path({str(tmp_path / "home")!r})))
        with instance.event_log_storage.run_connection("a-run"):
            pass  # a run's shard, created and stamped as a run's first event does
        versions = [instance.run_storage.alembic_version(),
                    instance.schedule_storage.alembic_version(),
                    instance.event_log_storage.alembic_version()]
        instance.dispose()
        print(len(loads), all(db == head and head for db, head in versions))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.split() == ["1", "True"], out


def test_wiping_the_history_closes_run_shards_before_deleting_them(tmp_path):
    instance = instance_for(make_settings(tmp_path / "home"))
    try:
        run = instance.create_run_for_job(dg.GraphDefinition(name="noop").to_job())
        instance.report_engine_event("before the wipe", run)
        assert run.run_id in instance.event_log_storage.kept_shards()
        instance.wipe()
        assert instance.event_log_storage.kept_shards() in ([], ["index"])
        instance.report_engine_event("after the wipe", run)  # the same run's shard
        # Written to a file that exists (not the deleted one), read back by a fresh instance.
        reread = instance_for(make_settings(tmp_path / "home"))
        assert [e.message for e in reread.all_logs(run.run_id)] == ["after the wipe"]
        reread.dispose()
    finally:
        instance.dispose()


def test_a_watched_run_streams_events_while_its_writer_keeps_the_connection(tmp_path):
    """The UI follows a running run through ``watch``: events must arrive as they are written,
    not when the writer's write-ahead log is next folded into the shard file."""
    import time as clock

    settings = make_settings(tmp_path / "home")
    writer, reader = instance_for(settings), instance_for(settings)
    try:
        run = writer.create_run_for_job(dg.GraphDefinition(name="noop").to_job())
        writer.report_engine_event("first", run)
        received: list[str] = []
        reader.watch_event_logs(run.run_id, None,
                                lambda entry, cursor: received.append(entry.message))
        for number in range(3):
            writer.report_engine_event(f"live {number}", run)
        deadline = clock.monotonic() + 15
        while "live 2" not in received and clock.monotonic() < deadline:
            clock.sleep(0.05)
        assert run.run_id in writer.event_log_storage.kept_shards()  # connection still open
        assert [m for m in received if m.startswith("live")] == ["live 0", "live 1", "live 2"]
    finally:
        reader.dispose()
        writer.dispose()


def _range_output_job():
    import datetime as dt

    from bdt_platform.core import partitions as parts

    @dg.asset(key=ASSET, partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def ranged(context) -> None:  # one output for the range: one event per partition
        return None

    job = dg.define_asset_job("ranged", selection=[ranged]).resolve(
        asset_graph=dg.Definitions(assets=[ranged]).resolve_asset_graph())
    tags = parts.range_tags(["NJ", "NM"], [dt.date(2024, m, 1) for m in range(1, 8)])
    return job, tags


def _count_store_batches(monkeypatch, materializations_only: bool = False) -> list[int]:
    """Sizes of the batches ``store_event_batch`` is given from now on (optionally only the
    batches made of materializations)."""
    batches: list[int] = []
    original = PooledSqliteEventLogStorage.store_event_batch

    def counting(self, events):
        if not materializations_only or all(
                event.dagster_event.is_step_materialization for event in events):
            batches.append(len(events))
        return original(self, events)

    monkeypatch.setattr(PooledSqliteEventLogStorage, "store_event_batch", counting)
    return batches


def _run_one_by_one_and_batched(monkeypatch, tmp_path, job, tags, batch_size: str, read):
    """``{"one_by_one": read(instance, result), "batched": ...}``: the job run on a fresh home
    without Dagster's event batching, then with batches of ``batch_size``."""
    seen = {}
    for name, size in [("one_by_one", None), ("batched", batch_size)]:
        if size is None:
            monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
        else:
            monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", size)
        instance = instance_for(make_settings(tmp_path / name))
        try:
            result = job.execute_in_process(instance=instance, tags=tags)
            assert result.success
            seen[name] = read(instance, result)
        finally:
            instance.dispose()
    return seen


def test_batched_partition_events_land_as_one_by_one_would(tmp_path, monkeypatch):
    """With Dagster's event batching on (bdt's local default), a range output's per-partition
    materializations are stored through ``store_event_batch``; what any reader sees must be
    what storing them one by one gives: partitions, per-partition look-ups (explain), tags."""
    job, tags = _range_output_job()
    batches = _count_store_batches(monkeypatch)

    def read(instance, result):
        partitions = sorted(instance.get_materialized_partitions(ASSET))
        per_partition = {
            key: [r.partition_key for r in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=ASSET, asset_partitions=[key]),
                limit=5).records]
            for key in partitions}
        latest = instance.get_latest_materialization_event(ASSET)
        return partitions, per_partition, latest.asset_materialization.partition

    seen = _run_one_by_one_and_batched(monkeypatch, tmp_path, job, tags, "8", read)
    assert len(seen["batched"][0]) == 14  # 2 states x 7 months
    assert all(found == [key] for key, found in seen["batched"][1].items())
    assert seen["batched"] == seen["one_by_one"]
    assert batches and max(batches) == 8 and sum(batches) >= 14


OTHER = dg.AssetKey(["feeds", "partner_outcomes_raw"])


def _logging_job():
    """Two assets materialized by one step that logs its own per-partition events, as the feed
    loaders do: every partition of the run but the first (its file 'quarantined'), the two
    assets' events interleaved, each with its own metadata."""
    import datetime as dt

    from bdt_platform.core import partitions as parts
    from bdt_platform.core.partition_events import log_materializations

    @dg.multi_asset(specs=[dg.AssetSpec(key, partitions_def=parts.state_month_partitions,
                                        skippable=True) for key in (ASSET, OTHER)],
                    backfill_policy=dg.BackfillPolicy.single_run(), can_subset=False)
    def loader(context):
        loaded = sorted(context.partition_keys)[1:]
        log_materializations(context, [
            dg.AssetMaterialization(asset_key=key, partition=partition,
                                    metadata={"rows": dg.MetadataValue.int(index)})
            for index, partition in enumerate(loaded) for key in (ASSET, OTHER)])
        yield from ()  # no outputs: the logged events are the materializations

    job = dg.define_asset_job("logging", selection=[loader]).resolve(
        asset_graph=dg.Definitions(assets=[loader]).resolve_asset_graph())
    tags = parts.range_tags(["NJ", "NM"], [dt.date(2024, m, 1) for m in range(1, 8)])
    return job, tags


def test_logged_partition_events_are_stored_in_batches_as_one_by_one_would(tmp_path,
                                                                            monkeypatch):
    """``partition_events.log_materializations`` (the feed loaders' and the report's events)
    goes through ``store_event_batch`` when batching is on, which writes each asset's latest
    row once per batch; readers must see exactly what one-by-one ``log_event`` gives."""
    job, tags = _logging_job()
    batches = _count_store_batches(monkeypatch, materializations_only=True)

    def read(instance, result):
        reported = [(e.asset_key, e.partition) for e in result.get_asset_materialization_events()]
        per_asset = {}
        for key in (ASSET, OTHER):
            partitions = sorted(instance.get_materialized_partitions(key))
            rows = {record.partition_key: record.asset_materialization.metadata["rows"].value
                    for record in instance.fetch_materializations(key, limit=100).records}
            latest = instance.get_latest_materialization_event(key)
            entry = instance.get_asset_records([key])[0].asset_entry
            # The asset's row points at its latest event by storage id: that id must be the
            # event's own (a batch insert hands out ids; they must not be shuffled).
            partition_by_id = {record.storage_id: record.partition_key for record in
                               instance.fetch_materializations(key, limit=100).records}
            latest_record = entry.last_materialization_record
            per_asset[key] = (partitions, rows, latest.asset_materialization.partition,
                              latest.asset_materialization.metadata["rows"].value,
                              entry.last_run_id == result.run_id,
                              partition_by_id[latest_record.storage_id]
                              == latest_record.partition_key)
        return reported, per_asset

    seen = _run_one_by_one_and_batched(monkeypatch, tmp_path, job, tags, "5", read)
    reported, per_asset = seen["batched"]
    assert len(reported) == 26 and reported[0] == (ASSET, reported[1][1])  # 13 partitions x 2
    for (partitions, rows, latest_partition, latest_rows, last_run_is_this,
         latest_id_is_its_own) in per_asset.values():
        assert len(partitions) == 13 and sorted(rows) == partitions
        assert latest_partition == reported[-1][1] and latest_rows == 12 and last_run_is_this
        assert latest_id_is_its_own
    assert seen["batched"] == seen["one_by_one"]
    assert batches == [5] * 5  # and the 26th event alone, stored as a single event
