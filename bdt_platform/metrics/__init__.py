"""The metric layer: metrics defined once in dbt's semantic layer
(``dbt_project/models/semantic/``), compiled by MetricFlow, run on the warehouse.

``MetricLayer`` is what the report assets, ``bdt metrics`` and the report site call; see
``layer.py``. Definitions: ``catalog.py``; SQL: ``compiler.py``; drill-down rows: ``records.py``;
the read-only warehouse copy for other processes: ``snapshot.py``.
"""

from bdt_platform.metrics.catalog import DIMENSIONS, Metric, MetricError
from bdt_platform.metrics.layer import MetricLayer, parse_months

__all__ = ["DIMENSIONS", "Metric", "MetricError", "MetricLayer", "parse_months"]
