"""Where the dbt project lives, its manifest, and the dbt CLI resource."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource
from dagster_dbt.core.dbt_cli_invocation import DbtCliInvocation
from packaging import version

from bdt_platform.core import heartbeat
from bdt_platform.warehouse import parse_state
from bdt_platform.warehouse.service_watchdog import ServiceWatchdog, interrupt

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
    (a fresh clone, or an edited model); cheap no-op otherwise. The parse state it leaves is
    every new home's first (``parse_state``: it records the profile it was parsed with)."""
    target = project_dir / "target"
    manifest = target / "manifest.json"
    if _manifest_stale(project_dir, manifest):
        environ = dict(os.environ)
        subprocess.run(
            [dbt_executable(), "parse", "--quiet", "--project-dir", str(project_dir),
             "--profiles-dir", str(project_dir), "--target-path", str(target)],
            check=True, cwd=project_dir, env=environ,
        )
        parse_state.record(project_dir, target, environ)
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

    # -- No dbt adapter in this process unless asked ----------------------------------------

    metadata_adapter: bool = False
    """Open a dbt adapter in this process for each dbt command, as dagster-dbt does by default.
    It serves only ``fetch_row_counts()`` and ``fetch_column_metadata()`` on the event stream,
    which bdt does not use (feeds, reports and the lake record their own row counts); it loads the
    project, the profile and every macro before the dbt process even starts (~2 s per command
    on a 2-core machine, twice per build). Set it if you add those calls: without an adapter
    dagster-dbt returns no metadata from them."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]):
        if not self.metadata_adapter:
            return None
        return super()._initialize_dbt_core_adapter(args)

    # -- Artifacts and parse state in the home, not in the package ------------------------

    work_dir: str = ""
    """``$BDT_HOME/dbt``: each dbt command's target folder (``runs/``, the newest
    ``KEPT_TARGETS`` kept) and dbt's parse state (``partial_parse.msgpack``) for this home.
    Empty: dagster-dbt's default (a new folder under the project's ``target/`` per command)."""

    indirect_selection: str = "buildable"
    """Which dbt tests run with a subset of the models (a run over further partitions builds
    only the facts; a run from the UI builds what was picked): dbt's ``--indirect-selection``.
    ``buildable`` runs a test when every model it reads is selected or upstream of a selected
    one. So a relationship test from a fact to a staging view runs with the fact, but not with
    the staging views alone, when the fact table may not exist yet. dagster-dbt's default is
    dbt's ``eager`` (any model read is selected). A ``DBT_INDIRECT_SELECTION`` set in the
    environment wins; dagster-dbt still turns it off when checks are deselected."""

    # -- A remote warehouse that stops answering --------------------------------------------

    service_name: str = ""
    service_probe_url: str = ""
    """The warehouse service's REST URL to probe while dbt runs (BigQuery in prod); empty for
    a local warehouse (DuckDB), which is never watched."""
    service_unreachable_seconds: float = 300.0
    """After this many seconds of failed probes in a row, dbt is stopped and the step fails
    with ``WarehouseUnreachable`` (retried: ``core/retries.py``)."""

    def stream_watched(self, invocation: DbtCliInvocation, what: str = "dbt build"):
        """``invocation.stream()``, watched by :class:`ServiceWatchdog` when a probe URL is set;
        each result it yields is noted for the run's progress lines (``core.heartbeat``)."""
        if not self.service_probe_url:
            yield from _noted(invocation.stream(), what)
            return
        watchdog = ServiceWatchdog(self.service_name or "the warehouse", self.service_probe_url,
                                   self.service_unreachable_seconds,
                                   on_lost=lambda: interrupt(invocation.process))
        with watchdog:
            try:
                yield from _noted(invocation.stream(), what)
            except Exception as error:
                if watchdog.lost.is_set():
                    raise watchdog.error(what) from error
                raise
        if watchdog.lost.is_set() and invocation.process.returncode:
            raise watchdog.error(what)

    def cli(self, args: Sequence[str], *, target_path: Path | None = None,
            **kwargs) -> DbtCliInvocation:
        if target_path is None and self.work_dir:
            target_path = self._new_target_path()
        # dagster-dbt reads the variable while building the command, and passes it to dbt.
        default = {INDIRECT_SELECTION_VARIABLE: self.indirect_selection}
        with _environment(default if self.indirect_selection else {}, keep_set=True):
            return super().cli(args, target_path=target_path, **kwargs)

    def _new_target_path(self) -> Path:
        runs = Path(self.work_dir) / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        for old in sorted(runs.iterdir())[:-(KEPT_TARGETS - 1) or None]:
            shutil.rmtree(old, ignore_errors=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        target = runs / f"{stamp}-{uuid.uuid4().hex[:8]}"  # sorts by start
        target.mkdir()
        # dbt re-reads only the files changed since the state it is given (or reading an env
        # var that changed): this home's last one, else the project's (a new home). Either is
        # fitted to the warehouse path dbt is about to use (``parse_state``: a copied home, or
        # the project's state, was parsed for another path); one that cannot be fitted is
        # handed over as it is (dagster-dbt copies the project's own into an empty target).
        work_dir, project_dir = Path(self.work_dir), Path(self.project_dir)
        kept = (work_dir / PARSE_STATE).exists()
        fitted = parse_state.fitted_state(project_dir, work_dir if kept else project_dir / "target",
                                          os.environ)
        if fitted is not None:
            (target / PARSE_STATE).write_bytes(fitted)
        elif kept:
            shutil.copy(work_dir / PARSE_STATE, target / PARSE_STATE)
        return target

    def keep_parse_state(self, invocation: DbtCliInvocation) -> None:
        """After a dbt command that succeeded, keep its parse state for the next command."""
        produced = Path(invocation.target_path) / PARSE_STATE
        if self.work_dir and produced.exists():
            kept = Path(self.work_dir) / PARSE_STATE
            partial = kept.with_name(f".{PARSE_STATE}.{uuid.uuid4().hex[:8]}")
            shutil.copy(produced, partial)
            os.replace(partial, kept)  # atomic: a concurrent command reads old or new, whole
            # What it was parsed with, so a copy of this home can have it fitted to its path.
            parse_state.record(Path(self.project_dir), Path(self.work_dir), os.environ)

    @staticmethod
    @contextlib.contextmanager
    def partition_env(variables: Mapping[str, object]) -> Iterator[None]:
        """The partition selection for the dbt command started inside this block, as the
        environment variables ``macros/partitioning.sql`` reads (``BDT_DBT_MIN_MONTH``,
        ``BDT_DBT_MAX_MONTH``, ``BDT_DBT_STATES``). Unlike ``--vars``, which make dbt parse the
        whole project again whenever they change, these are read only when models are compiled
        (never while parsing), so the saved parse state stays valid for any partitions. The
        command's process inherits them; this process gets its own back."""
        with _environment({f"BDT_DBT_{name.upper()}": ",".join(value)
                           if isinstance(value, list) else str(value)
                           for name, value in variables.items()}):
            yield


@contextlib.contextmanager
def _environment(values: Mapping[str, str], keep_set: bool = False) -> Iterator[None]:
    """``os.environ`` updated with ``values`` inside the block (with ``keep_set``, only the
    variables not set already), and as it was again after."""
    if keep_set:
        values = {name: value for name, value in values.items() if name not in os.environ}
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


INDIRECT_SELECTION_VARIABLE = "DBT_INDIRECT_SELECTION"
PARSE_STATE = parse_state.PARSE_STATE
#: dbt commands whose target folder (manifest, run results, compiled SQL, dbt.log) is kept.
KEPT_TARGETS = 20


def dbt_resource(target: str, project_dir: Path = DBT_PROJECT_DIR,
                 work_dir: Path | None = None, **watch) -> BundledDbtCliResource:
    """``watch``: ``service_name``, ``service_probe_url``, ``service_unreachable_seconds``."""
    return BundledDbtCliResource(project_dir=str(project_dir), profiles_dir=str(project_dir),
                                 target=target, dbt_executable=dbt_executable(),
                                 work_dir=str(work_dir) if work_dir else "", **watch)


def _noted(events, what: str):
    """``events`` (dagster-dbt's results of one dbt command), each noted as it passes."""
    for count, event in enumerate(events, start=1):
        key = getattr(event, "asset_key", None)
        heartbeat.note(f"{what}: {count} result(s) so far, the last "
                       f"{key.to_user_string() if key is not None else type(event).__name__}")
        yield event
