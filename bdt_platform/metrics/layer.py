"""The metric layer: every number the platform shows, from its one definition.

``MetricLayer.query`` validates a request (metric names, dimensions, states, months), compiles
it with MetricFlow (``compiler.py``) and runs the SQL on the warehouse: the live one inside a
build (``reports.outcomes`` takes its numbers from here), or the published read-only snapshot for
readers in other processes (``snapshot=True``: the report site). ``records`` lists the rows
behind a value (``records.py``). ``bdt metrics``, the report site and the report assets all use
this class; none of them writes SQL of a number.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.metrics.catalog import DIMENSIONS, GROUP_BY_NAME, Catalog, Metric, MetricError
from bdt_platform.metrics.compiler import Compiler
from bdt_platform.metrics.records import RECORD_COLUMNS, records_sql

_LAYERS: dict[tuple, "MetricLayer"] = {}
_LAYERS_LOCK = threading.Lock()
_COMPILERS: dict[tuple, tuple[Catalog, Compiler]] = {}


def semantic_manifest_path(project_dir: Path) -> Path:
    """``target/semantic_manifest.json`` of the dbt project, parsed first when stale."""
    from bdt_platform.warehouse.project import prepare_manifest

    return prepare_manifest(Path(project_dir)).with_name("semantic_manifest.json")


def _catalog_and_compiler(project_dir: Path, dialect: str) -> tuple[Catalog, Compiler]:
    path = semantic_manifest_path(project_dir)
    key = (str(path), path.stat().st_mtime_ns, dialect)
    with _LAYERS_LOCK:
        if key not in _COMPILERS:
            catalog = Catalog.from_file(path)
            _COMPILERS[key] = (catalog, Compiler(catalog.manifest, dialect))
        return _COMPILERS[key]


def parse_months(text: str | None) -> tuple[dt.date, dt.date] | None:
    """``2024-03`` or ``2024-01..2024-06`` (or ISO dates) -> inclusive first-of-month bounds."""
    if text is None or not str(text).strip():
        return None

    def month(part: str) -> dt.date:
        part = part.strip()
        try:
            value = dt.date.fromisoformat(part if len(part) > 7 else f"{part}-01")
        except ValueError:
            raise MetricError(f"not a month: {part!r} (use YYYY-MM, or YYYY-MM..YYYY-MM)") from None
        return value.replace(day=1)

    first, _, last = str(text).partition("..")
    bounds = (month(first), month(last) if last else month(first))
    if bounds[0] > bounds[1]:
        raise MetricError(f"month range {text!r} ends before it starts")
    return bounds


def only_pairs(frame: pd.DataFrame, pairs) -> pd.DataFrame:
    """The rows of ``frame`` whose (state, month) is one of ``pairs`` (``month`` made a date)."""
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    wanted = set(pairs)
    # A boolean Series, not a list: an empty list would select no *columns* of an empty frame.
    keep = pd.Series([(s, m) in wanted for s, m in zip(frame["state"], frame["month"])],
                     index=frame.index, dtype=bool)
    return frame[keep]


def check_states(states: Iterable[str] | None) -> list[str] | None:
    if states is None:
        return None
    checked = []
    for state in states:
        code = str(state).strip().upper()
        if code not in parts.STATES:
            raise MetricError(f"unknown state {str(state)[:40]!r}: use two-letter codes such as PA")
        if code not in checked:
            checked.append(code)
    return checked


def _month_bounds(months) -> tuple[dt.date, dt.date] | None:
    if months is None:
        return None
    if isinstance(months, str):
        return parse_months(months)
    first, last = months
    first = pd.Timestamp(first).date().replace(day=1)
    last = pd.Timestamp(last).date().replace(day=1)
    if first > last:
        raise MetricError(f"month range {first:%Y-%m}..{last:%Y-%m} ends before it starts")
    return first, last


class MetricLayer:
    """Metric definitions and their values on one warehouse (see the module docstring)."""

    def __init__(self, catalog: Catalog, compiler: Compiler, runner):
        self.catalog, self.compiler, self.runner = catalog, compiler, runner

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def for_warehouse(cls, warehouse, project_dir: Path) -> "MetricLayer":
        """On a warehouse resource (``storage.warehouse``), in the process that writes it."""
        dialect = "bigquery" if type(warehouse).__name__ == "BigQueryWarehouse" else "duckdb"
        catalog, compiler = _catalog_and_compiler(project_dir, dialect)
        return cls(catalog, compiler, warehouse)

    @classmethod
    def for_settings(cls, settings, snapshot: bool = False) -> "MetricLayer":
        """One layer per process and home. ``snapshot=True`` (readers in other processes such
        as the report site): on DuckDB, the snapshot each build publishes, never the warehouse
        file itself."""
        key = (str(settings.home), settings.env, snapshot)
        with _LAYERS_LOCK:
            layer = _LAYERS.get(key)
        if layer is not None:
            return layer
        from bdt_platform.core.resources import build_warehouse

        warehouse = build_warehouse(settings)
        if snapshot and settings.env != "prod":
            from bdt_platform.metrics.snapshot import SnapshotReader, snapshot_path

            catalog, compiler = _catalog_and_compiler(settings.dbt_project_dir, "duckdb")
            layer = cls(catalog, compiler, SnapshotReader(snapshot_path(settings.site_dir)))
        else:
            layer = cls.for_warehouse(warehouse, settings.dbt_project_dir)
        with _LAYERS_LOCK:
            return _LAYERS.setdefault(key, layer)

    def ensure_snapshot(self, settings) -> None:
        """Readers on DuckDB: when no build has published a snapshot yet (a warehouse built
        before the metric layer existed), publish one now from the warehouse (a moment under
        its write lock; ``WarehouseBusy`` if a build holds it)."""
        path = getattr(self.runner, "path", None)
        if path is None or Path(path).exists() or not settings.warehouse_path.exists():
            return
        from bdt_platform.core.resources import build_warehouse

        build_warehouse(settings).publish_snapshot()

    def refresh(self) -> None:
        """Pick up a newer snapshot (cheap; a no-op on a live warehouse)."""
        refresh = getattr(self.runner, "refresh", None)
        if refresh is not None:
            refresh()

    # -- definitions -------------------------------------------------------------------------

    def metrics(self) -> list[Metric]:
        return list(self.catalog.metrics.values())

    def metric(self, name: str) -> Metric:
        return self.catalog.metric(name)

    # -- values ------------------------------------------------------------------------------

    def _check(self, names: Sequence[str], by: Sequence[str]) -> tuple[list[str], list[str]]:
        names = [str(name).strip() for name in names if str(name).strip()]
        if not names:
            raise MetricError("no metric asked for")
        by = [str(d).strip() for d in by if str(d).strip()]
        for dimension in by:
            if dimension not in DIMENSIONS:
                raise MetricError(f"unknown dimension {dimension[:40]!r}; dimensions: "
                                  f"{', '.join(DIMENSIONS)}")
        if len(set(by)) != len(by):
            raise MetricError("a dimension is named twice")
        for name in names:
            metric = self.metric(name)
            for dimension in by:
                if dimension not in metric.dimensions:
                    raise MetricError(f"metric {name} has no dimension {dimension} (it has "
                                      f"{', '.join(metric.dimensions)})")
        return list(dict.fromkeys(names)), by

    def query(self, names: Sequence[str], by: Sequence[str] = ("state", "month"),
              states: Iterable[str] | None = None, months=None) -> pd.DataFrame:
        """Columns ``*by, *names``: state (str), month (``datetime.date``), program (str);
        values float, NaN where a metric has no value. Sorted by ``by``."""
        names, by = self._check(names, by)
        states = check_states(states)
        bounds = _month_bounds(months)
        if states == []:
            return pd.DataFrame(columns=[*by, *names])
        sql = self.compiler.sql(names, by, states, bounds)
        frame = self.runner.query(sql)
        frame = frame.rename(columns={GROUP_BY_NAME[d]: d for d in by})
        frame.columns = [str(c).lower() for c in frame.columns]
        if "month" in by:
            frame["month"] = pd.to_datetime(frame["month"]).dt.date
        for name in names:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        frame = frame[[*by, *names]]
        if by:
            frame = frame.sort_values(by, kind="stable")
        return frame.reset_index(drop=True)

    # -- the rows behind a value ---------------------------------------------------------------

    def record_rows(self, names: Sequence[str], pairs: Sequence[tuple[str, dt.date]],
                    ) -> pd.DataFrame:
        """``metric, state, month`` + the record columns, for many metrics and partitions at
        once (the report's ledger)."""
        if not pairs:
            return pd.DataFrame(columns=["metric", "state", "month", *RECORD_COLUMNS])
        states = sorted({s for s, _ in pairs})
        months = sorted({m for _, m in pairs})
        where = (f"state in ({', '.join('?' for _ in states)}) and month between ? and ?")
        params_one = [*states, months[0], months[-1]]
        selects, params = [], []
        for name in names:
            measure = self.metric(name).records_measure
            source = self.catalog.sources[measure]
            selects.append(f"select '{name}' as metric, r.* from "
                           f"({records_sql(source, where, self.compiler.dialect)}) as r")
            params.extend(params_one)
        frame = self.runner.query(" union all ".join(selects), params)
        frame.columns = [str(c).lower() for c in frame.columns]
        return only_pairs(frame, pairs).reset_index(drop=True)

    def records(self, name: str, state: str, month) -> pd.DataFrame:
        """The rows behind ``name``'s value for one state x month (a ratio: its numerator's;
        a derived metric: its first input's). Count metrics: as many rows as the value; sums:
        amounts that add up to it."""
        metric = self.metric(name)
        (code,) = check_states([state])
        bounds = _month_bounds((month, month) if not isinstance(month, str) else month)
        if bounds[0] != bounds[1]:
            raise MetricError("records are listed for one month at a time")
        source = self.catalog.sources[metric.records_measure]
        sql = records_sql(source, "state = ? and month = ?", self.compiler.dialect)
        frame = self.runner.query(f"{sql} order by record_id", [code, bounds[0]])
        frame.columns = [str(c).lower() for c in frame.columns]
        if not frame.empty:
            frame["occurred_on"] = pd.to_datetime(frame["occurred_on"]).dt.date
        return frame[RECORD_COLUMNS].reset_index(drop=True)

    # -- what has data -------------------------------------------------------------------------

    def partitions(self) -> list[tuple[str, dt.date]]:
        """Every (state, month) the report has a row for."""
        try:
            frame = self.runner.query("select distinct state, month from reports.outcomes")
        except Exception as exc:  # noqa: BLE001 - no report yet: nothing has data
            if "outcomes" in str(exc).lower() or "not found" in str(exc).lower():
                return []
            raise
        return sorted((row.state, pd.Timestamp(row.month).date())
                      for row in frame.itertuples(index=False))

    def states(self) -> list[str]:
        return sorted({state for state, _ in self.partitions()}, key=parts.STATES.index)

    def months(self) -> list[dt.date]:
        return sorted({month for _, month in self.partitions()})
