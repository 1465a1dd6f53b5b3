"""Metric requests -> SQL, through MetricFlow's Python engine (metricflow 0.213, pinned).

MetricFlow only *compiles* here: the SQL runs on the platform's own warehouse connection
(DuckDB locally, BigQuery in production), so the metric layer needs no dbt adapter and no
second connection. The engine is built once per semantic manifest and dialect, and compiled
SQL is cached per request shape (the engine is not a stable public API: the project pins it and
tests cover it).

No user text ever reaches a MetricFlow ``where`` filter (a Jinja template): filters are built
here from values already checked against closed lists (state codes) or parsed as dates.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import threading
from collections.abc import Sequence

from bdt_platform.metrics.catalog import GROUP_BY_NAME

DIALECTS = ("duckdb", "bigquery")


class _CompileOnlyClient:
    """The part of MetricFlow's ``SqlClient`` protocol the engine uses to render SQL."""

    def __init__(self, dialect: str):
        from metricflow.protocols.sql_client import SqlEngine

        if dialect == "bigquery":
            from metricflow.sql.render.big_query import BigQuerySqlPlanRenderer

            self._engine, self._renderer = SqlEngine.BIGQUERY, BigQuerySqlPlanRenderer()
        else:
            from metricflow.sql.render.duckdb_renderer import DuckDbSqlPlanRenderer

            self._engine, self._renderer = SqlEngine.DUCKDB, DuckDbSqlPlanRenderer()

    @property
    def sql_engine_type(self):
        return self._engine

    @property
    def sql_plan_renderer(self):
        return self._renderer

    def _refuse(self, *args, **kwargs):
        raise RuntimeError("the metric layer compiles with MetricFlow and runs the SQL itself")

    query = execute = dry_run = _refuse

    def close(self) -> None:
        pass

    def render_bind_parameter_key(self, bind_parameter_key: str) -> str:
        return f"${bind_parameter_key}"


def portable_manifest(manifest: dict) -> dict:
    """The manifest with each semantic model's relation as ``schema.table``: the catalog or
    project dbt parsed with (a DuckDB file's name, a GCP project) is the connection's default,
    so the same SQL runs on the warehouse and on its snapshot."""
    manifest = copy.deepcopy(manifest)
    for model in manifest["semantic_models"]:
        relation = model["node_relation"]
        relation["database"] = None
        relation["relation_name"] = f"{relation['schema_name']}.{relation['alias']}"
    return manifest


class Compiler:
    """One MetricFlow engine for one manifest and dialect; thread-safe, with a SQL cache."""

    def __init__(self, manifest: dict, dialect: str):
        if dialect not in DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}")
        from metricflow.engine.metricflow_engine import MetricFlowEngine
        from metricflow_semantics.model.dbt_manifest_parser import (
            parse_manifest_from_dbt_generated_manifest)
        from metricflow_semantics.model.semantic_manifest_lookup import SemanticManifestLookup

        semantic = parse_manifest_from_dbt_generated_manifest(
            manifest_json_string=json.dumps(portable_manifest(manifest)))
        self.dialect = dialect
        self._engine = MetricFlowEngine(semantic_manifest_lookup=SemanticManifestLookup(semantic),
                                        sql_client=_CompileOnlyClient(dialect))
        self._lock = threading.Lock()

    def sql(self, names: Sequence[str], by: Sequence[str], states: Sequence[str] | None,
            months: tuple[dt.date, dt.date] | None) -> str:
        """SQL whose columns are ``metric_time__month`` / ``state`` / ``program`` (those asked
        for) and one per metric. ``states`` must already be valid codes, ``months`` dates."""
        return self._cached(tuple(names), tuple(by), tuple(states) if states else None, months)

    @functools.lru_cache(maxsize=512)
    def _cached(self, names, by, states, months) -> str:
        from metricflow.engine.metricflow_engine import MetricFlowQueryRequest

        where = []
        if states is not None:
            # Checked codes only (two capital letters from the closed list): never user text.
            assert all(len(s) == 2 and s.isalpha() and s.isupper() for s in states)
            quoted = ", ".join(f"'{state}'" for state in states)
            where.append(f"{{{{ Entity('state') }}}} in ({quoted})")
        request = MetricFlowQueryRequest.create(
            metric_names=list(names), group_by_names=[GROUP_BY_NAME[d] for d in by],
            where_constraints=where or None,
            time_constraint_start=(dt.datetime.combine(months[0], dt.time())
                                   if months else None),
            time_constraint_end=(dt.datetime.combine(months[1], dt.time()) if months else None))
        with self._lock:  # the engine keeps per-query id state
            return self._engine.explain(request).sql_statement.sql
