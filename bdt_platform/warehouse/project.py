"""Where the dbt project lives, its manifest, and the dbt CLI resource."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
_SOURCE_GLOBS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*", "tests/**/*")


def dbt_executable() -> str:
    """The ``dbt`` beside this Python (the venv's), so no activation is needed."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _manifest_stale(project_dir: Path, manifest: Path) -> bool:
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built
               for pattern in _SOURCE_GLOBS for path in project_dir.glob(pattern)
               if path.is_file())


def prepare_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Parse the dbt project when its manifest is missing or older than the project files
    (a fresh clone, or an edited model); cheap no-op otherwise."""
    manifest = project_dir / "target" / "manifest.json"
    if _manifest_stale(project_dir, manifest):
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(project_dir),
             "--profiles-dir", str(project_dir), "--target-path", str(project_dir / "target")],
            check=True, cwd=project_dir,
        )
    return manifest


def dbt_resource(target: str, project_dir: Path = DBT_PROJECT_DIR) -> DbtCliResource:
    return DbtCliResource(project_dir=str(project_dir), profiles_dir=str(project_dir),
                          target=target, dbt_executable=dbt_executable())
