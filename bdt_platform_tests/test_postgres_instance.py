"""The Dagster instance in PostgreSQL (``BDT_DAGSTER_PG_URL``), on a real server.

A small synthetic home is ingested and built through ``instance_for``; the runs and the
materializations are then read straight from PostgreSQL's tables, the instance's folder is
checked to hold no SQLite storage and no password, and turning the setting off brings bdt's
SQLite ``dagster.yaml`` back.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import (INSTANCE_CONFIG_MARK, PG_URL_VARIABLE, instance_config,
                                    instance_for)
from bdt_platform.core.settings import SettingsError
from bdt_platform.explain import history
from bdt_platform.synthetic import generate

from .conftest import ingest_and_build, make_settings
from .postgres_server import postgres_server  # noqa: F401  (the session's server, a fixture)

STATE, MONTH = "PA", dt.date(2024, 1, 1)
REPORT = dg.AssetKey(["reports", "outcomes"])


@pytest.fixture(scope="module")
def world(tmp_path_factory, postgres_server):  # noqa: F811
    from bdt_platform.definitions import build_definitions

    with pytest.MonkeyPatch.context() as patch:
        # instance_for exports the URL into this process; it goes again after the module (the
        # server stops with the session), so no later test or subprocess inherits it.
        patch.delenv(PG_URL_VARIABLE, raising=False)
        home = tmp_path_factory.mktemp("postgres") / "home"
        settings = make_settings(home, BDT_DAGSTER_PG_URL=postgres_server.url)
        generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=[STATE],
                 months=[MONTH], scale=0.1, seed=3, pii_key=settings.pii_key)
        defs = build_definitions(settings)
        instance = instance_for(settings)
        try:
            ingested, built, lines = ingest_and_build(defs, instance)
            yield {"settings": settings, "instance": instance, "ingested": ingested,
                   "built": built, "lines": lines, "server": postgres_server}
        finally:
            instance.dispose()


def _rows(server, sql: str, *args) -> list[tuple]:
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall()
    finally:
        connection.close()


def test_the_platform_runs_on_the_postgres_instance(world):
    assert world["ingested"].exit_code == 0, world["lines"]
    assert world["built"].exit_code == 0, world["lines"]
    instance = world["instance"]
    assert type(instance.run_storage).__module__.startswith("dagster_postgres")
    assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
    assert type(instance.schedule_storage).__module__.startswith("dagster_postgres")


def test_runs_and_materializations_are_in_postgres(world):
    server = world["server"]
    run_ids = {run_id for (run_id,) in _rows(server, "SELECT run_id FROM runs")}
    ours = {run.run_id for run in world["ingested"].runs} | {run.run_id for run in world["built"].runs}
    assert ours and ours <= run_ids
    report_rows = _rows(server, "SELECT count(*) FROM event_logs WHERE dagster_event_type = "
                                "'ASSET_MATERIALIZATION' AND asset_key = %s AND partition = %s",
                        REPORT.to_string(), parts.partition_key(STATE, MONTH))
    assert report_rows[0][0] >= 1
    feeds = _rows(server, "SELECT count(DISTINCT asset_key) FROM event_logs WHERE "
                          "dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key LIKE %s",
                  '["raw", %')
    assert feeds[0][0] >= 4  # the partner feeds and the case-management tables


def test_no_sqlite_storage_and_no_password_under_dagster_home(world):
    settings, server = world["settings"], world["server"]
    home = settings.dagster_home
    config = (home / "dagster.yaml").read_text()
    assert config == instance_config(home, postgres=True)
    assert config.startswith(INSTANCE_CONFIG_MARK)
    assert f"env: {PG_URL_VARIABLE}" in config and "PooledSqliteStorage" not in config
    assert not (home / "history").exists() and not (home / "schedules").exists()
    files = [path for path in home.rglob("*") if path.is_file()]
    assert not [path for path in files if path.suffix in (".db", ".sqlite", ".db-wal")]
    assert not [path for path in files if server.password.encode() in path.read_bytes()]
    # Nor in what Dagster hands to the processes it starts (run workers, the daemon).
    assert server.password not in repr(world["instance"].get_ref())
    assert server.password not in repr(settings)


def test_explain_reads_the_history_back(world):
    instance = world["instance"]
    partition = parts.partition_key(STATE, MONTH)
    snapshots = history.history(instance, REPORT, partition)
    assert snapshots and snapshots[0].partition == partition
    assert {snap.run_id for snap in snapshots} <= {run.run_id for run in world["built"].runs}
    feed = dg.AssetKey(["raw", "eligibility"])
    loaded = history.history(instance, feed, partition)
    assert loaded and loaded[0].sources  # the files the partition was loaded from


def test_a_second_instance_reads_the_same_history(world):
    """Another process's instance (the web server, a later ``bdt explain``) sees it too."""
    again = instance_for(world["settings"])
    try:
        partition = parts.partition_key(STATE, MONTH)
        assert history.history(again, REPORT, partition)
        assert len(again.get_runs()) == len(world["instance"].get_runs())
    finally:
        again.dispose()


def test_switching_the_setting_off_brings_the_sqlite_default_back(world):
    settings = world["settings"]
    home = settings.dagster_home
    plain = make_settings(settings.home)
    instance = instance_for(plain)
    try:
        assert (home / "dagster.yaml").read_text() == instance_config(home)
        assert type(instance.event_log_storage).__module__ == "bdt_platform.core.instance_storage"
        assert not instance.get_runs()  # a separate, empty instance: the history stays in PostgreSQL
    finally:
        instance.dispose()
    # And on again.
    instance = instance_for(settings)
    try:
        assert (home / "dagster.yaml").read_text() == instance_config(home, postgres=True)
        assert history.history(instance, REPORT, parts.partition_key(STATE, MONTH))
    finally:
        instance.dispose()


@pytest.mark.parametrize("url", ["mysql://user:hunter2@db/dagster", "sqlite:///x.db",
                                 "user:hunter2@db:5432/dagster", "postgresql://",
                                 "postgresql+psycopg://user:hunter2@db/dagster"])
def test_a_url_that_is_not_postgres_names_the_variable_and_hides_the_value(tmp_path, url):
    with pytest.raises(SettingsError) as raised:
        make_settings(tmp_path / "home", BDT_DAGSTER_PG_URL=url)
    message = str(raised.value)
    assert message.startswith("BDT_DAGSTER_PG_URL ") and "\n" not in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432/d", "postgres://u:p@h/d",
                                 "postgresql+psycopg2://u:p@h/d"])
def test_postgres_urls_are_accepted_and_kept_out_of_the_repr(tmp_path, url):
    settings = make_settings(tmp_path / "home", BDT_DAGSTER_PG_URL=url)
    assert settings.dagster_pg_url == url
    assert settings.dagster_pg_driver_url.startswith("postgresql+psycopg2://")
    assert settings.dagster_pg_driver_url.endswith(url.split("://", 1)[1])
    assert url not in repr(settings) and "u:p@" not in repr(settings)
    assert make_settings(tmp_path / "home").dagster_pg_url is None
    assert os.environ.get(PG_URL_VARIABLE) != url  # reading settings exports nothing
