"""The sources a build's code versions come from, as one hash: what ``bdt build`` checks before
it loads any definitions.

Every code version a build records comes from files on this machine and the installed
libraries: dagster-dbt's per-model versions from the dbt project's SQL (parsed by the installed
dbt), the report, outreach and export assets' from this package's modules, and the results
also depend on the outreach configuration (and its do-not-contact list) and a few settings.
Hashing those (``source_fingerprint``) takes milliseconds and no import of dbt, dagster-dbt or
the definitions (~4-5 s of a command's start-up); every ``bdt build`` run carries it
(``staleness.SOURCE_TAG``) beside the code-version fingerprint. The same hash as the newest
build's means the same code versions; a different one may still mean the same code versions
(an edit to the report site's code), which the definitions then decide
(``staleness.code_fingerprint``). So the hash only ever speeds up a skip, never makes one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # bdt_platform/
DEFAULT_DBT_PROJECT = PACKAGE_DIR.parent / "dbt_project"  # as warehouse.project has it
#: The dbt project's files that dbt parses (as ``warehouse.project`` watches them).
DBT_SOURCE_GLOBS = ("dbt_project.yml", "profiles.yml", "models/**/*", "macros/**/*",
                    "tests/**/*")
#: The installed libraries whose versions can change what the same sources compute.
LIBRARIES = ("dagster", "dagster-dbt", "dbt-core", "dbt-duckdb", "dbt-bigquery", "duckdb",
             "metricflow", "pandas", "pyarrow", "statsmodels", "scipy")


def source_fingerprint(dbt_project_dir: Path, outreach_config: Path | None,
                       settings_inputs: Mapping[str, str] | None = None) -> str:
    """A sha256 (16 hex) of this package's Python and YAML files, the dbt project's sources,
    the outreach configuration and the do-not-contact file it names, the versions of
    ``LIBRARIES`` and ``settings_inputs``."""
    digest = hashlib.sha256()
    project = Path(dbt_project_dir).resolve()
    _add_files(digest, PACKAGE_DIR, sorted(
        path for pattern in ("**/*.py", "**/*.yaml", "**/*.yml", "**/*.sql")
        for path in PACKAGE_DIR.glob(pattern) if "__pycache__" not in path.parts))
    _add_files(digest, project, sorted(
        path for pattern in DBT_SOURCE_GLOBS for path in project.glob(pattern)
        if path.is_file() and "target" not in path.relative_to(project).parts))
    if outreach_config is not None:
        config = Path(outreach_config)
        _add_files(digest, config.parent, [config, *_do_not_contact(config)])
    for name in LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "-"
        digest.update(f"{name}=={version}\n".encode())
    digest.update(json.dumps(dict(settings_inputs or {}), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _add_files(digest, root: Path, paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            name = str(path.relative_to(root))
        except ValueError:
            name = str(path)
        data = path.read_bytes() if path.is_file() else b"<missing>"
        digest.update(f"{name}\0{len(data)}\0".encode() + data)


def _do_not_contact(config: Path) -> list[Path]:
    """The do-not-contact file the outreach configuration names (none if it names none or
    cannot be read: the build's runs then fail and say why)."""
    from bdt_platform.outreach.config import OutreachConfigError, load_config

    try:
        source = load_config(config).do_not_contact_source
    except (OutreachConfigError, OSError):
        return []
    return [Path(source)] if source else []
