"""Where the dbt project lives, its manifest, and the dbt CLI resource."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
_SOURCE_GLOBS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*")


def dbt_executable() -> str:
    """The ``dbt`` beside this Python (the venv's), so no activation is needed."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _manifest_stale(manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built
               for pattern in _SOURCE_GLOBS for path in DBT_PROJECT_DIR.glob(pattern)
               if path.is_file())


def prepare_manifest() -> Path:
    """Parse the dbt project when its manifest is missing or older than the project files
    (a fresh clone, or an edited model); cheap no-op otherwise."""
    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    if _manifest_stale(manifest):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR), "--target-path",
             str(DBT_PROJECT_DIR / "target")],
            check=True, cwd=DBT_PROJECT_DIR,
        )
    return manifest


dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_resource(target: str) -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR),
                          target=target, dbt_executable=dbt_executable())
