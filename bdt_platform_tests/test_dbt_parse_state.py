"""A new home's first dbt command reuses the project's parse state (``warehouse/parse_state.py``)
instead of parsing the whole project, and the manifest it gets is the one a full parse gives; a
copy of a home (another warehouse path) reuses the home's. A profile that differs in more than
the warehouse's path (here: its file name, which is the parsed nodes' ``database``) is never
fitted: dbt parses in full, as without the module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgpack
import pytest

from bdt_platform.warehouse import parse_state
from bdt_platform.warehouse.project import DBT_PROJECT_DIR, dbt_resource, prepare_manifest


def _dbt(monkeypatch, home: Path, args: list[str], warehouse: str = "warehouse.duckdb"):
    """One dbt command in ``home`` as a build runs it (the home's work folder, the profile's
    path from the environment); its target folder."""
    monkeypatch.setenv("BDT_WAREHOUSE_PATH", str(home / warehouse))
    monkeypatch.setenv("BDT_DBT_TARGET", "duckdb")
    invocation = dbt_resource("duckdb", work_dir=home / "dbt").cli(args)
    invocation.wait()
    return Path(invocation.target_path)


def _parsed_files(target: Path) -> int:
    return json.loads((target / "perf_info.json").read_text())["parsed_path_count"]


def _events(target: Path) -> set[str]:
    return {json.loads(line)["info"]["name"]
            for line in (target / "dbt.log").read_text().splitlines() if line.strip()}


def _nodes(target: Path) -> dict:
    """The manifest's parsed resources, without the parse's own timestamps."""
    def strip(value):
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key != "created_at"}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    manifest = json.loads((target / "manifest.json").read_text())
    return {key: strip(value) for key, value in manifest.items() if key != "metadata"}


def test_a_new_homes_first_command_parses_nothing_and_gets_a_full_parses_manifest(
        monkeypatch, tmp_path):
    prepare_manifest()
    home = tmp_path / "home"
    first = _dbt(monkeypatch, home, ["parse"])
    assert "UnableToPartialParse" not in _events(first)
    assert "PartialParsingEnabled" in _events(first)

    full = _dbt(monkeypatch, home, ["parse", "--no-partial-parse"])
    assert _parsed_files(full) > 100  # every model, test and macro file, read again
    # Only the files reading an env var whose value differs from the project's parse (the
    # process running the tests may have exported some, e.g. BDT_MAIL_PIECE_COST_USD).
    assert _parsed_files(first) < 10
    assert _nodes(first) == _nodes(full)
    assert {node["database"] for node in _nodes(first)["nodes"].values()
            if node["resource_type"] == "model"} == {"warehouse"}


def test_a_copied_homes_first_command_reuses_the_homes_parse_state(monkeypatch, tmp_path):
    prepare_manifest()
    home, copy = tmp_path / "home", tmp_path / "copy"
    monkeypatch.setenv("BDT_WAREHOUSE_PATH", str(home / "warehouse.duckdb"))
    monkeypatch.setenv("BDT_DBT_TARGET", "duckdb")
    resource = dbt_resource("duckdb", work_dir=home / "dbt")
    invocation = resource.cli(["parse"])
    invocation.wait()
    resource.keep_parse_state(invocation)  # as a build does after its dbt command
    assert (home / "dbt" / parse_state.SIDECAR).exists()
    shutil.copytree(home, copy)
    target = _dbt(monkeypatch, copy, ["parse"])
    assert _parsed_files(target) < 10 and "UnableToPartialParse" not in _events(target)


def test_a_warehouse_of_another_name_is_parsed_in_full(monkeypatch, tmp_path):
    prepare_manifest()
    home = tmp_path / "home"
    target = _dbt(monkeypatch, home, ["parse"], warehouse="other.duckdb")
    assert _parsed_files(target) > 100
    assert "UnableToPartialParse" in _events(target)
    assert {node["database"] for node in _nodes(target)["nodes"].values()
            if node["resource_type"] == "model"} == {"other"}


@pytest.fixture
def project_state(tmp_path) -> Path:
    """A copy of the project's parse state and its record."""
    prepare_manifest()
    copy = tmp_path / "target"
    copy.mkdir()
    for name in (parse_state.PARSE_STATE, parse_state.SIDECAR):
        shutil.copy(DBT_PROJECT_DIR / "target" / name, copy / name)
    return copy


def _environ(path: Path) -> dict[str, str]:
    return {"BDT_WAREHOUSE_PATH": str(path), "BDT_DBT_TARGET": "duckdb"}


def test_the_fitted_state_differs_from_the_projects_only_in_the_profile_hash(project_state,
                                                                              tmp_path):
    wanted = _environ(tmp_path / "home" / "warehouse.duckdb")
    fitted = parse_state.fitted_state(DBT_PROJECT_DIR, project_state, wanted)
    assert fitted is not None
    before = msgpack.unpackb((project_state / parse_state.PARSE_STATE).read_bytes(),
                             raw=False, strict_map_key=False)
    after = msgpack.unpackb(fitted, raw=False, strict_map_key=False)
    expected = parse_state.profile_hash(parse_state.connection_values(DBT_PROJECT_DIR, wanted))
    assert after["state_check"]["profile_hash"]["checksum"] == expected
    assert after["state_check"]["profile_hash"]["checksum"] != \
        before["state_check"]["profile_hash"]["checksum"]
    after["state_check"]["profile_hash"] = before["state_check"]["profile_hash"]
    assert after == before

    # What plain dbt commands of bdt's own get (the bench's baseline): written once, the
    # project's state as fitted; a folder that has a state keeps it.
    folder = tmp_path / "plain"
    assert parse_state.seed(DBT_PROJECT_DIR, folder, wanted)
    seeded = (folder / parse_state.PARSE_STATE).read_bytes()
    assert seeded == parse_state.fitted_state(DBT_PROJECT_DIR, DBT_PROJECT_DIR / "target", wanted)
    assert not parse_state.seed(DBT_PROJECT_DIR, folder, wanted)


def test_a_state_without_a_record_that_proves_it_is_never_fitted(project_state, tmp_path):
    wanted = _environ(tmp_path / "home" / "warehouse.duckdb")
    sidecar = project_state / parse_state.SIDECAR
    noted = json.loads(sidecar.read_text())

    sidecar.write_text(json.dumps({**noted, "profile_hash": "0" * 64}))  # a later `dbt parse`
    assert parse_state.fitted_state(DBT_PROJECT_DIR, project_state, wanted) is None

    other = [[key, "elsewhere" if key == "schema" else value] for key, value in noted["values"]]
    sidecar.write_text(json.dumps({**noted, "values": other}))  # not what dbt hashed
    assert parse_state.fitted_state(DBT_PROJECT_DIR, project_state, wanted) is None

    sidecar.write_text(json.dumps(noted))
    assert parse_state.fitted_state(DBT_PROJECT_DIR, project_state, wanted) is not None
    assert parse_state.fitted_state(DBT_PROJECT_DIR, project_state,
                                    {**wanted, "BDT_DBT_TARGET": "bigquery"}) is None

    sidecar.unlink()
    assert parse_state.fitted_state(DBT_PROJECT_DIR, project_state, wanted) is None
