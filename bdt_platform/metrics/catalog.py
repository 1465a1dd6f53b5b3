"""The metric definitions, as dbt's semantic layer declares them.

Reads ``semantic_manifest.json`` (written by ``dbt parse`` beside ``manifest.json``) and
describes each metric the way the CLI and the report site show it: label, description, kind,
unit, direction, dimensions and, for drill-down, the semantic-model rows behind each measure.
Nothing here computes a number: ``compiler.py`` turns a request into SQL through MetricFlow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Dimensions a request may group or filter by (the names users type).
DIMENSIONS = ("state", "month", "program")
#: How each dimension is named in a MetricFlow request.
GROUP_BY_NAME = {"state": "state", "month": "metric_time__month", "program": "program"}
UNITS = ("count", "rate", "usd", "days", "per_1000")


class MetricError(ValueError):
    """A request the metric layer cannot answer: unknown metric, dimension, state or month, or
    a dimension the metric does not have. ``str()`` is the reason; ``status`` the HTTP status
    that fits it (404 unknown metric, 400 otherwise)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class MeasureSource:
    """Where a measure's rows live: its semantic model's table and the SQL that picks them."""

    measure: str
    agg: str
    expr: str
    table: str  # schema.name
    record_id: str
    record_date: str
    program: str | None


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    description: str
    kind: str  # simple | ratio | derived
    dimensions: tuple[str, ...]
    unit: str
    higher_is_better: bool
    definition: dict = field(default_factory=dict, compare=False, hash=False)
    #: The measure whose rows a drill-down lists (a ratio's numerator, a derived metric's first
    #: input).
    records_measure: str | None = None


class Catalog:
    """Every metric and measure of one semantic manifest."""

    def __init__(self, manifest: dict[str, Any]):
        self.manifest = manifest
        self.sources: dict[str, MeasureSource] = {}
        self._program_measures: set[str] = set()
        for model in manifest["semantic_models"]:
            relation = model["node_relation"]
            table = f"{relation['schema_name']}.{relation['alias']}"
            records = ((model.get("config") or {}).get("meta") or {}).get("records") or {}
            has_program = any(entity["name"] == "program" for entity in model["entities"])
            primary = next((e["expr"] or e["name"] for e in model["entities"]
                            if e["type"] == "primary"), None)
            for measure in model["measures"]:
                self.sources[measure["name"]] = MeasureSource(
                    measure=measure["name"], agg=measure["agg"],
                    expr=measure.get("expr") or measure["name"], table=table,
                    record_id=records.get("id") or primary or "null",
                    record_date=records.get("date") or "month",
                    program=records.get("program"))
                if has_program:
                    self._program_measures.add(measure["name"])
        self._raw = {metric["name"]: metric for metric in manifest["metrics"]}
        self.metrics = {name: self._describe(raw) for name, raw in sorted(self._raw.items())}

    @classmethod
    def from_file(cls, path: Path) -> "Catalog":
        return cls(json.loads(Path(path).read_text()))

    # -- metrics -----------------------------------------------------------------------------

    def measures_of(self, name: str) -> list[str]:
        """Every measure a metric reads, through ratios and derived metrics."""
        raw = self._raw[name]
        params = raw["type_params"]
        if raw["type"] == "simple":
            return [params["measure"]["name"]]
        inputs = ([params["numerator"]["name"], params["denominator"]["name"]]
                  if raw["type"] == "ratio" else [m["name"] for m in params["metrics"]])
        return [measure for metric in inputs for measure in self.measures_of(metric)]

    def _describe(self, raw: dict) -> Metric:
        meta = (raw.get("config") or {}).get("meta") or {}
        measures = self.measures_of(raw["name"])
        dimensions = ("state", "month") + (
            ("program",) if all(m in self._program_measures for m in measures) else ())
        params = {key: value for key, value in raw["type_params"].items()
                  if value not in (None, [], {}) and key != "input_measures"}
        unit = meta.get("unit", "count")
        if unit not in UNITS:
            raise ValueError(f"metric {raw['name']}: meta.unit {unit!r} is not one of {UNITS}")
        return Metric(
            name=raw["name"], label=raw.get("label") or raw["name"],
            description=" ".join((raw.get("description") or "").split()),
            kind=raw["type"], dimensions=dimensions, unit=unit,
            higher_is_better=bool(meta.get("higher_is_better", True)),
            definition=params, records_measure=measures[0] if measures else None)

    def metric(self, name: str) -> Metric:
        try:
            return self.metrics[name]
        except KeyError:
            raise MetricError(f"unknown metric {name!r}; known metrics: "
                              f"{', '.join(self.metrics)}", status=404) from None
