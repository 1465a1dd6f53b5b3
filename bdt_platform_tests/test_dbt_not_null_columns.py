"""The warehouse's ``not_null_columns`` dbt test (``dbt_project/tests/generic/``): one query per
model for all its required columns. Run by dbt itself on DuckDB, in a throwaway project that
uses the platform's macro file: it fails with one row per column that has NULLs (the column and
how many rows), and passes a model whose required columns are all filled. (On BigQuery it runs
in test_prod_parity's dbt build against the emulator.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

MACRO = (Path(__file__).resolve().parents[1] / "dbt_project" / "tests" / "generic"
         / "not_null_columns.sql")

PROJECT = """
name: not_null_columns_check
version: "1.0"
profile: not_null_columns_check
test-paths: [tests]
models:
  not_null_columns_check:
    +materialized: table
"""

MODELS = """
version: 2
models:
  - name: people_with_gaps
    data_tests:
      - not_null_columns:
          name: not_null_people_with_gaps
          arguments:
            columns: [person_id, home_state, household_size]
          config:
            store_failures: true
  - name: people_complete
    data_tests:
      - not_null_columns:
          name: not_null_people_complete
          arguments:
            columns: [person_id, home_state]
"""


def test_fails_once_naming_each_column_with_nulls_and_passes_a_complete_model(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "tests" / "generic").mkdir(parents=True)
    (project / "tests" / "generic" / MACRO.name).write_text(MACRO.read_text())
    (project / "dbt_project.yml").write_text(PROJECT)
    (project / "profiles.yml").write_text(
        "not_null_columns_check:\n  target: duckdb\n  outputs:\n    duckdb:\n"
        f"      type: duckdb\n      path: {tmp_path / 'warehouse.duckdb'}\n      threads: 1\n")
    (project / "models" / "schema.yml").write_text(MODELS)
    (project / "models" / "people_with_gaps.sql").write_text(
        "select * from (values (1, 'PA', 2), (2, null, null), (3, 'NJ', null))"
        " as t(person_id, home_state, household_size)")
    (project / "models" / "people_complete.sql").write_text(
        "select * from (values (1, 'PA'), (2, 'NJ')) as t(person_id, home_state)")

    done = subprocess.run([str(Path(sys.executable).with_name("dbt")), "build",
                           "--profiles-dir", str(project), "--project-dir", str(project)],
                          capture_output=True, text=True, cwd=project, timeout=300)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # one test failed
    results = {r["unique_id"].split(".")[2]: r for r in json.loads(
        (project / "target" / "run_results.json").read_text())["results"]}
    gaps, complete = results["not_null_people_with_gaps"], results["not_null_people_complete"]
    # One failing row per column with NULLs; person_id (never NULL) is not among them.
    assert (gaps["status"], gaps["failures"]) == ("fail", 2)
    assert (complete["status"], complete["failures"]) == ("pass", 0)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as db:
        [schema] = db.execute("select schema_name from information_schema.schemata "
                              "where schema_name like '%dbt_test__audit'").fetchone()
        stored = db.execute(f'select column_name, null_rows from "{schema}".'
                            "not_null_people_with_gaps order by column_name").fetchall()
    assert stored == [("home_state", 1), ("household_size", 2)]
