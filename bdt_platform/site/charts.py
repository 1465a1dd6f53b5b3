"""Vega-Lite specs with their data inlined (never a ``data.url``), rendered in the page by the
site's own Vega JavaScript (``/static/vega.js``) as SVG (``static/site.js``).

Each function returns a plain Vega-Lite v6 spec (a dict); :func:`embed_json` makes it safe to
place inside a ``<script type="application/json">`` element.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pandas as pd

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
#: d3 formats per metric unit (axes and tooltips).
FORMATS = {"count": ",.0f", "rate": ".1%", "usd": "$,.2f", "days": ",.1f", "per_1000": ",.1f"}
UNITS_FORMAT = {"count": "{:,.0f}", "usd": "${:,.2f}", "days": "{:,.1f}", "per_1000": "{:,.1f}"}
FUNNEL = (("eligible", "people_eligible"), ("mailed", "pieces_mailed"), ("called", "calls"),
          ("applied", "applications"), ("approved", "approvals"))


def format_value(value, unit: str) -> str:
    """A number as the pages show it, by unit (``-`` for none)."""
    if value is None or value != value:
        return "-"
    if unit == "rate":
        return f"{value:.1%}"
    return UNITS_FORMAT.get(unit, "{:,.2f}").format(value)


def _plain(value):
    if value is None:
        return None
    if isinstance(value, (dt.date, pd.Timestamp)):
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def records(frame: pd.DataFrame) -> list[dict]:
    """A frame as JSON-ready rows: dates as ``YYYY-MM-DD``, NaN as null."""
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def embed_json(spec: dict) -> str:
    """JSON that cannot close its ``<script>`` element."""
    return (json.dumps(spec, separators=(",", ":"), allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def line_chart(frame: pd.DataFrame, metric: str, unit: str, title: str | None = None,
               color: str | None = "state", width: int | str = 320, height: int = 160) -> dict:
    """``metric`` over ``month``, a line per ``color`` value."""
    columns = ["month", metric] + ([color] if color and color in frame.columns else [])
    values = records(frame[columns].rename(columns={metric: "value"}))
    fmt = FORMATS.get(unit, ",.2f")
    encoding = {
        "x": {"field": "month", "type": "temporal", "title": None,
              "axis": {"format": "%Y-%m", "labelAngle": -30}},
        "y": {"field": "value", "type": "quantitative", "title": None, "axis": {"format": fmt}},
        "tooltip": [{"field": "month", "type": "temporal", "format": "%Y-%m"},
                    {"field": "value", "type": "quantitative", "format": fmt}],
    }
    if color and color in frame.columns:
        encoding["color"] = {"field": color, "type": "nominal", "title": color}
        encoding["tooltip"].insert(0, {"field": color, "type": "nominal"})
    spec = {"$schema": SCHEMA, "width": width, "height": height, "data": {"values": values},
            "mark": {"type": "line", "point": True}, "encoding": encoding}
    if title:
        spec["title"] = title
    return spec


def sparkline(frame: pd.DataFrame, metric: str) -> dict:
    """A tiny line of ``metric`` over ``month``: no axes, no title."""
    values = records(frame[["month", metric]].rename(columns={metric: "value"}))
    return {"$schema": SCHEMA, "width": 110, "height": 26, "padding": 2,
            "data": {"values": values}, "config": {"view": {"stroke": None}},
            "mark": {"type": "line", "strokeWidth": 1.5, "point": {"size": 10}},
            "encoding": {"x": {"field": "month", "type": "temporal", "axis": None},
                         "y": {"field": "value", "type": "quantitative", "axis": None,
                               "scale": {"zero": False}}}}


def bar_chart(frame: pd.DataFrame, metric: str, unit: str, category: str,
              color: str | None = None) -> dict:
    columns = [category, metric] + ([color] if color else [])
    values = records(frame[columns].rename(columns={metric: "value"}))
    encoding = {"x": {"field": category, "type": "nominal", "title": category, "sort": None},
                "y": {"field": "value", "type": "quantitative", "title": metric,
                      "axis": {"format": FORMATS.get(unit, ",.2f")}}}
    if color:
        encoding["color"] = {"field": color, "type": "nominal"}
    return {"$schema": SCHEMA, "width": 720, "height": 220, "data": {"values": values},
            "mark": "bar", "encoding": encoding}


def funnel_chart(rows: list[dict]) -> dict:
    """Horizontal bars, one per funnel step (``FUNNEL`` order), stacked by ``program``."""
    order = [step for step, _ in FUNNEL]
    return {"$schema": SCHEMA, "width": 420, "height": 170, "data": {"values": rows},
            "mark": "bar",
            "encoding": {
                "y": {"field": "step", "type": "nominal", "sort": order, "title": None},
                "x": {"field": "value", "type": "quantitative", "title": "people / pieces",
                      "stack": "zero"},
                "color": {"field": "program", "type": "nominal", "title": "program"},
                "tooltip": [{"field": "step"}, {"field": "program"},
                            {"field": "value", "type": "quantitative", "format": ",.0f"}]}}
