"""The JSON endpoints the pages name, and the CSV downloads.

- ``GET /api/metrics`` -> the metric definitions;
- ``GET /api/metrics/<name>?by=state,month[&states=PA,NJ][&months=2024-01..2024-06]`` ->
  ``{"metric": name, "rows": [{"state": .., "month": "YYYY-MM-01", "value": ..}, ..]}``;
- ``GET /api/records/<name>?state=PA&month=2024-03`` -> ``{"metric", "state", "month",
  "count", "rows": [...]}``: the records behind that number (person tokens, never PII);
- ``GET /download/records/<name>.csv?state=PA&month=2024-03`` and
  ``GET /download/explore.csv?metrics=a,b&by=..&states=..&months=..``: the same as CSV.

Without a session every one answers 401 JSON; a state outside the user's own, 403.
"""

from __future__ import annotations

import io

import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from bdt_platform.site import charts, views
from bdt_platform.site.auth import current_user
from bdt_platform.site.scope import (check_state, parse_by, parse_month, parse_months,
                                     parse_states)

router = APIRouter()


def _user(request: Request):
    user = current_user(request)
    request.app.state.site.data.refresh()
    return user


def _states_shown(frame: pd.DataFrame, asked) -> str:
    if "state" in frame.columns:
        return ",".join(sorted(frame["state"].unique()))
    return ",".join(asked or [])


def _csv(frame: pd.DataFrame, filename: str) -> Response:
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/api/metrics")
def list_metrics(request: Request):
    _user(request)
    metrics = request.app.state.site.data.metrics()
    request.state.view.rows = len(metrics)
    return {"metrics": [{"name": m.name, "label": m.label, "description": m.description,
                         "kind": m.kind, "dimensions": list(m.dimensions), "unit": m.unit,
                         "higher_is_better": m.higher_is_better} for m in metrics]}


@router.get("/api/metrics/{name}")
def metric_values(request: Request, name: str, by: str | None = None, states: str | None = None,
                  months: str | None = None):
    user = _user(request)
    dims = parse_by(by)
    asked = parse_states(states)
    frame = request.app.state.site.data.query(user, [name], by=dims, states=asked,
                                               months=parse_months(months))
    frame = frame.sort_values(list(dims)).rename(columns={name: "value"}) if dims else frame
    request.state.view.metric = name
    request.state.view.states = _states_shown(frame, asked)
    request.state.view.rows = len(frame)
    return JSONResponse({"metric": name, "rows": charts.records(frame)})


def _records(request: Request, name: str, state: str | None, month: str | None):
    user = _user(request)
    checked = check_state(user, state)
    first = parse_month(month)
    frame = request.app.state.site.data.records(user, name, checked, first)
    request.state.view.metric = name
    request.state.view.states = checked
    request.state.view.rows = len(frame)
    return frame, checked, first


@router.get("/api/records/{name}")
def records(request: Request, name: str, state: str | None = None, month: str | None = None):
    frame, state, first = _records(request, name, state, month)
    return JSONResponse({"metric": name, "state": state, "month": first.isoformat(),
                         "count": len(frame), "rows": charts.records(frame)})


@router.get("/download/records/{name}.csv")
def records_csv(request: Request, name: str, state: str | None = None,
                month: str | None = None):
    frame, state, first = _records(request, name, state, month)
    return _csv(frame, f"{name}_{state}_{first:%Y-%m}.csv")


@router.get("/download/explore.csv")
def explore_csv(request: Request, metrics: str | None = None, by: str | None = None,
                states: str | None = None, months: str | None = None):
    user = _user(request)
    query = views.ExploreQuery.parse(metrics or "", by, states, months)
    if not query.names:
        from bdt_platform.site.scope import BadRequest

        raise BadRequest("name at least one metric (metrics=a,b)")
    frame = views.explore_frame(request.app.state.site, user, query)
    request.state.view.metric = ",".join(query.names)
    request.state.view.states = _states_shown(frame, query.states)
    request.state.view.rows = len(frame)
    return _csv(frame, "explore.csv")
