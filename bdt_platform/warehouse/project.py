"""Where the dbt project lives, its manifest, and the dbt CLI resource."""

from __future__ import annotations

import subprocess
import sys
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version

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


class BundledDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt resource, for the dbt installed beside this Python.

    Before each dbt command dagster-dbt asks the executable for its version (``dbt --version``:
    a whole extra dbt process start, ~7-9 s on a 2-core machine, once per run). When the
    executable is this environment's own dbt (``dbt_executable()``; pinned in pyproject), its
    version is the installed dbt-core's, known without a process. Any other executable is asked,
    as dagster-dbt does."""

    @cached_property
    def _cli_version(self) -> version.Version:
        bundled = Path(sys.executable).with_name("dbt")
        if Path(self.dbt_executable) == bundled and bundled.exists():
            from dbt.version import __version__ as dbt_core_version

            return version.parse(dbt_core_version)
        return super()._cli_version


def dbt_resource(target: str, project_dir: Path = DBT_PROJECT_DIR) -> DbtCliResource:
    return BundledDbtCliResource(project_dir=str(project_dir), profiles_dir=str(project_dir),
                                 target=target, dbt_executable=dbt_executable())
