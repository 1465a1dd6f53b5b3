"""The asset graph as the design fixes it: keys, partitions, checks, jobs, environments."""

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.settings import SettingsError, load_settings

from .conftest import make_settings

RAW = {"eligibility", "outcomes", "mailreturns", "nudges", "clients", "applications", "calls"}
MARTS = {"dim_person", "fct_outreach", "fct_calls", "fct_applications", "fct_enrollment_outcomes"}


@pytest.fixture
def graph(tmp_path):
    from bdt_platform.definitions import build_definitions

    defs = build_definitions(make_settings(tmp_path))
    return defs, defs.resolve_asset_graph()


def test_asset_keys(graph):
    _, asset_graph = graph
    keys = {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
    assert {f"raw/{name}" for name in RAW} <= keys
    assert {f"marts/{name}" for name in MARTS} <= keys
    assert "reports/outcomes" in keys
    assert any(key.startswith("staging/stg_") for key in keys)


def test_partitions_and_backfill_policy(graph):
    _, asset_graph = graph
    for name in [*(f"raw/{n}" for n in RAW), "reports/outcomes", "marts/fct_outreach",
                 "marts/fct_applications"]:
        node = asset_graph.get(dg.AssetKey.from_user_string(name))
        assert node.partitions_def == parts.state_month_partitions, name
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), name
    assert asset_graph.get(dg.AssetKey(["marts", "dim_person"])).partitions_def is None


def test_lineage_feeds_to_report(graph):
    _, asset_graph = graph
    report = dg.AssetKey(["reports", "outcomes"])
    upstream = asset_graph.upstream_key_iterator(report)
    ancestors = set()
    frontier = [report]
    while frontier:
        key = frontier.pop()
        for parent in asset_graph.get(key).parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    assert {dg.AssetKey(["raw", name]) for name in RAW} <= ancestors
    assert upstream is not None


def test_checks(graph):
    _, asset_graph = graph
    checks = {(key.asset_key.to_user_string(), key.name) for key in asset_graph.asset_check_keys}
    for name in RAW:
        assert (f"raw/{name}", "contract") in checks
    assert ("reports/outcomes", "contract") in checks
    dbt_checks = [c for c in checks if c[0].startswith(("marts/", "staging/"))]
    assert any(name.startswith("unique_") for _, name in dbt_checks)
    assert any(name.startswith("not_null_") for _, name in dbt_checks)
    # Each model's required columns are one check (tests/generic/not_null_columns.sql).
    assert {("marts/dim_person", "not_null_dim_person"),
            ("staging/stg_partners__eligibility", "not_null_stg_partners__eligibility")} <= checks


def test_jobs(graph):
    defs, _ = graph
    assert defs.resolve_job_def("ingest_feeds") and defs.resolve_job_def("build_warehouse")
    # Runs launched by the daemon or the UI run their steps in the run's process (no process
    # per step; see definitions.py), the UI's ad-hoc asset job too.
    for job in ["ingest_feeds", "build_warehouse", "export_reports", "__ASSET_JOB"]:
        assert defs.resolve_job_def(job).executor_def is dg.in_process_executor, job


def test_every_dbt_model_is_one_asset_definition_and_only_facts_are_partitioned(graph):
    """One dbt command builds the whole warehouse: every model belongs to one multi-asset,
    whose facts are partitioned and whose views and dimensions are not."""
    from bdt_platform.warehouse.build import BUILD_JOB, job_assets

    defs, asset_graph = graph
    dbt_keys = [key for key in asset_graph.get_all_asset_keys()
                if key.path[0] in ("staging", "intermediate", "marts", "semantic")]
    assert len({asset_graph.get(key).assets_def.op.name for key in dbt_keys}) == 1
    partitioned = {key.to_user_string() for key in job_assets(defs, BUILD_JOB, partitioned=True)}
    whole = {key.to_user_string() for key in job_assets(defs, BUILD_JOB, partitioned=False)}
    # The metric layer's views over a fact are partitioned with it (built in the same dbt
    # command as the fact, never before it exists).
    assert partitioned == {f"marts/{name}" for name in MARTS - {"dim_person"}} | {
        "reports/outcomes", "semantic/sem_outreach", "semantic/sem_applications",
        "outreach/mail_list", "outreach/nudge_assignments", "ml/propensity_scores"}
    # The response model trains on every month built (its versions), once per build.
    assert "marts/dim_person" in whole and "ml/response_model" in whole and all(
        key.startswith(("staging/", "intermediate/", "marts/dim_", "semantic/"))
        for key in whole - {"ml/response_model"})
    # The metric layer's views over the marts and its time spine (models/semantic/).
    assert {"semantic/sem_eligibility", "semantic/metricflow_time_spine"} <= whole
    # the report, the two lists, the model and its scores
    assert len(partitioned | whole) == len(dbt_keys) + 5


def test_a_subset_of_models_runs_only_the_tests_it_can_build(tmp_path, monkeypatch):
    """dbt picks the tests of a subset of models by ``--indirect-selection``: bdt's resource
    makes it ``buildable``, so the staging views alone do not run a fact's relationship test
    (which reads a fact table that may not exist yet), unless the environment says otherwise."""
    import os

    from bdt_platform.warehouse.project import dbt_resource, prepare_manifest

    monkeypatch.setenv("BDT_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("DBT_INDIRECT_SELECTION", raising=False)
    resource = dbt_resource("duckdb", work_dir=tmp_path / "dbt")

    def tests_selected_with_the_clients_view() -> list[str]:
        invocation = resource.cli(["ls", "--resource-type", "test", "--output", "name",
                                   "--select", "stg_casemgmt__clients"],
                                  manifest=prepare_manifest())
        listed = [event.raw_event["info"]["msg"] for event in invocation.stream_raw_events()
                  if event.raw_event["info"]["name"] == "PrintEvent"]
        assert invocation.is_successful()
        return listed

    buildable = tests_selected_with_the_clients_view()
    assert "unique_stg_casemgmt__clients_client_id" in buildable
    assert not [name for name in buildable if name.startswith("relationships_fct_")]
    assert "DBT_INDIRECT_SELECTION" not in os.environ  # set for the command only
    monkeypatch.setenv("DBT_INDIRECT_SELECTION", "eager")
    eager = tests_selected_with_the_clients_view()
    assert [name for name in eager if name.startswith("relationships_fct_calls_client_id")]


def test_settings_switch():
    local = load_settings({"BDT_HOME": "/tmp/x", "BDT_PII_KEY": "k"})
    assert (local.env, local.dbt_target) == ("local", "duckdb")
    assert local.inbox == "/tmp/x/inbox" and local.lake == "/tmp/x/lake"
    with pytest.raises(SettingsError, match="BDT_GCP_PROJECT"):
        load_settings({"BDT_ENV": "prod", "BDT_PII_KEY": "k"})
    with pytest.raises(SettingsError, match="BDT_ENV"):
        load_settings({"BDT_ENV": "staging"})


def test_local_pii_key_is_generated_once(tmp_path, capsys):
    first = load_settings({"BDT_HOME": str(tmp_path)})
    assert "warning" in capsys.readouterr().err
    second = load_settings({"BDT_HOME": str(tmp_path)})
    assert first.pii_key == second.pii_key and len(first.pii_key) == 64


def test_bundled_dbt_version_is_what_the_executable_reports():
    """The dbt resource skips dagster-dbt's `dbt --version` call for the venv's own dbt: the
    version it assumes must be the one that executable reports."""
    import re
    import subprocess

    from dagster_dbt import DbtCliResource

    from bdt_platform.warehouse.project import (DBT_PROJECT_DIR, BundledDbtCliResource,
                                                dbt_executable, dbt_resource)

    resource = dbt_resource("duckdb")
    assert isinstance(resource, BundledDbtCliResource)
    assert "_cli_version" in vars(DbtCliResource)  # the dagster-dbt attribute it replaces
    printed = subprocess.run([dbt_executable(), "--version"], capture_output=True, text=True,
                             check=True).stdout
    reported = re.search(r"(\d+\.\d+\.\d+)", printed).group(1)
    assert str(resource._cli_version) == reported
    # Another executable is still asked.
    other = BundledDbtCliResource(project_dir=str(DBT_PROJECT_DIR), dbt_executable="/bin/false")
    try:
        other._cli_version
    except Exception:
        pass
    else:
        raise AssertionError("a foreign executable must be asked for its version")


def test_dbt_commands_open_no_adapter_in_this_process_unless_asked(tmp_path, monkeypatch):
    """dagster-dbt opens a dbt adapter in the calling process before every command, only for
    ``fetch_row_counts``/``fetch_column_metadata``; bdt's resource skips it unless asked."""
    from bdt_platform.warehouse.project import DBT_PROJECT_DIR, dbt_resource, prepare_manifest

    monkeypatch.setenv("BDT_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    resource = dbt_resource("duckdb", work_dir=tmp_path / "dbt")
    invocation = resource.cli(["ls", "--resource-type", "model"], manifest=prepare_manifest())
    listed = [event.raw_event["info"]["msg"] for event in invocation.stream_raw_events()]
    assert invocation.is_successful() and "bdt_platform.marts.fct_outreach" in listed
    assert invocation.adapter is None
    asked = resource.model_copy(update={"metadata_adapter": True})
    monkeypatch.chdir(DBT_PROJECT_DIR)
    assert type(asked._initialize_dbt_core_adapter(["ls"])).__name__ == "DuckDBAdapter"


def test_dbt_commands_get_folders_in_the_home_seeded_with_its_parse_state(tmp_path,
                                                                          monkeypatch):
    import os

    from bdt_platform.warehouse import parse_state
    from bdt_platform.warehouse.project import (DBT_PROJECT_DIR, KEPT_TARGETS, PARSE_STATE,
                                                dbt_resource, prepare_manifest)

    prepare_manifest()
    monkeypatch.setenv("BDT_WAREHOUSE_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("BDT_DBT_TARGET", "duckdb")
    resource = dbt_resource("duckdb", work_dir=tmp_path / "dbt")
    first = resource._new_target_path()
    # A new home: the project's state, fitted to its warehouse (test_dbt_parse_state).
    assert first.parent == tmp_path / "dbt" / "runs"
    assert (first / PARSE_STATE).read_bytes() == parse_state.fitted_state(
        DBT_PROJECT_DIR, DBT_PROJECT_DIR / "target", os.environ)
    # The home's own state once it has one (not a state this module can fit: passed as is).
    (tmp_path / "dbt" / PARSE_STATE).write_bytes(b"state of the last good command")
    folders = [resource._new_target_path() for _ in range(KEPT_TARGETS + 3)]
    assert (folders[-1] / PARSE_STATE).read_bytes() == b"state of the last good command"
    kept = sorted((tmp_path / "dbt" / "runs").iterdir())
    assert len(kept) == KEPT_TARGETS and kept[-1] == folders[-1] and first not in kept

    os.environ.pop("BDT_DBT_STATES", None)
    os.environ["BDT_DBT_MIN_MONTH"] = "left alone"
    with resource.partition_env({"min_month": "2024-01-01", "max_month": "2024-03-01",
                                 "states": ["NJ", "PA"]}):
        assert os.environ["BDT_DBT_MIN_MONTH"] == "2024-01-01"
        assert os.environ["BDT_DBT_STATES"] == "NJ,PA"
    assert os.environ.pop("BDT_DBT_MIN_MONTH") == "left alone"
    assert "BDT_DBT_STATES" not in os.environ and "BDT_DBT_MAX_MONTH" not in os.environ
