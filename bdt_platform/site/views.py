"""What each page shows, as template contexts: built from ``SiteData`` (the metric layer,
scoped to the user) and shared by the signed-in pages (``pages.py``) and embedded links.

Every builder sets ``request.state.view`` (metric, states, rows) for the usage row.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.site import charts
from bdt_platform.site.data import NoData
from bdt_platform.site.scope import (BadRequest, check_state, parse_by, parse_month, parse_months,
                                     parse_names, parse_states)
from bdt_platform.site.users import User

MAX_TABLE_ROWS = 2000


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


@dataclass
class Change:
    arrow: str = ""
    css: str = "flat"
    text: str = ""


def change(now: float | None, before: float | None, higher_is_better: bool) -> Change:
    """The arrow and colour of ``now`` against ``before``: up/down, good/bad by direction."""
    if now is None or before is None:
        return Change("", "none", "no data")
    delta = now - before
    if abs(delta) < 1e-12:
        return Change("=", "flat", "no change")
    relative = f" ({delta / before:+.1%})" if before else ""
    good = (delta > 0) == higher_is_better
    return Change("▲" if delta > 0 else "▼", "good" if good else "bad",
                  f"{delta:+,.4g}{relative}")


@dataclass
class Cell:
    metric: str
    unit: str
    value: float | None
    vs_month: Change
    vs_year: Change
    below_target: bool = False
    target: str = ""


@dataclass
class ScoreRow:
    state: str
    cells: list[Cell]
    spark: dict
    below: int = 0
    sort_key: float | str | None = None


def _lookup(frame: pd.DataFrame, names: list[str]) -> dict[tuple[str, dt.date], dict]:
    return {(row["state"], pd.Timestamp(row["month"]).date()): row
            for row in frame[["state", "month", *names]].to_dict("records")}


def _months(data) -> list[dt.date]:
    months = sorted(data.months())
    if not months:
        raise NoData("the metric layer has no months with data yet: run bdt build")
    return months


def _pick_month(months: list[dt.date], text: str | None) -> dt.date:
    if not text:
        return months[-1]
    month = parse_month(text)
    if month not in months:
        raise BadRequest(f"no data for {month:%Y-%m}: months with data are "
                         f"{months[0]:%Y-%m}..{months[-1]:%Y-%m}")
    return month


def scorecard(request, site, user: User, month_text: str | None = None,
              sort: str | None = None, direction: str | None = None) -> dict:
    data = site.data
    months = _months(data)
    month = _pick_month(months, month_text)
    targets = site.targets()
    names = list(targets.scorecard)
    metrics = {name: data.metric(name) for name in names}
    sort = sort or "state"
    if sort != "state" and sort not in metrics:
        raise BadRequest(f"cannot sort by {sort[:40]!r}: sort by state or a scorecard metric "
                         f"({', '.join(names)})")
    descending = (direction or ("asc" if sort == "state" else "desc")) == "desc"
    first = max(months[0], parts.add_months(month, -12))
    frame = data.query(user, names, by=("state", "month"), months=(first, month))
    values = _lookup(frame, names)
    prev, year_ago = parts.add_months(month, -1), parts.add_months(month, -12)
    spark_metric = sort if sort != "state" else names[0]
    rows = []
    for state in data.states(user):
        now_row = values.get((state, month), {})
        cells = []
        for name in names:
            metric = metrics[name]
            now = _num(now_row.get(name))
            target = targets.targets.get(name)
            below = bool(target and target.misses(state, now))
            goal = ""
            if target:
                goal = (f"target {'≥' if target.direction == 'at_least' else '≤'} "
                        f"{charts.format_value(target.value_for(state), metric.unit)}")
            cells.append(Cell(
                name, metric.unit, now,
                change(now, _num(values.get((state, prev), {}).get(name)), metric.higher_is_better),
                change(now, _num(values.get((state, year_ago), {}).get(name)),
                       metric.higher_is_better), below, goal))
        history = frame[frame["state"] == state].sort_values("month")
        row = ScoreRow(state, cells, charts.sparkline(history, spark_metric),
                       sum(c.below_target for c in cells))
        row.sort_key = state if sort == "state" else next(c.value for c in cells
                                                          if c.metric == sort)
        rows.append(row)
    with_value = [r for r in rows if r.sort_key is not None]
    rows = sorted(with_value, key=lambda r: r.sort_key, reverse=descending) + [
        r for r in rows if r.sort_key is None]
    request.state.view.metric = ",".join(names)
    request.state.view.states = ",".join(r.state for r in rows)
    request.state.view.rows = len(rows)
    return {"month": month, "months": months, "metrics": [metrics[n] for n in names],
            "rows": rows, "sort": sort, "descending": descending, "spark_metric": spark_metric,
            "prev": prev, "year_ago": year_ago,
            "source": f"/api/metrics/{names[0]}?by=state,month&months={first:%Y-%m}..{month:%Y-%m}"}


def state_page(request, site, user: User, state: str, month_text: str | None = None) -> dict:
    data = site.data
    state = check_state(user, state)
    metrics = [m for m in data.metrics() if {"state", "month"} <= set(m.dimensions)]
    frame = data.query(user, [m.name for m in metrics], by=("state", "month"), states=[state])
    frame = frame.sort_values("month")
    months = sorted(pd.Timestamp(m).date() for m in frame["month"].unique())
    trends = [(m, charts.line_chart(frame, m.name, m.unit, color=None, width=260, height=120))
              for m in metrics]
    funnel_rows, funnel_month = [], None
    if months:
        funnel_month = _pick_month(months, month_text)
        by_name = {m.name: m for m in metrics}
        steps = [(step, name) for step, name in charts.FUNNEL if name in by_name]
        totals = frame[pd.to_datetime(frame["month"]).dt.date == funnel_month]
        with_program = [n for _, n in steps if "program" in by_name[n].dimensions]
        programs = pd.DataFrame()
        if with_program:
            programs = data.query(user, with_program, by=("state", "month", "program"),
                                  states=[state], months=(funnel_month, funnel_month))
        for step, name in steps:
            if name in with_program and not programs.empty:
                for row in programs[["program", name]].to_dict("records"):
                    funnel_rows.append({"step": step, "metric": name, "program": row["program"],
                                        "value": _num(row[name]) or 0.0})
            else:
                value = _num(totals[name].iloc[0]) if len(totals) else None
                funnel_rows.append({"step": step, "metric": name, "program": "all programs",
                                    "value": value or 0.0})
    request.state.view.metric = ",".join(m.name for m in metrics)
    request.state.view.states = state
    request.state.view.rows = len(frame)
    return {"state": state, "trends": trends, "funnel": charts.funnel_chart(funnel_rows),
            "funnel_rows": funnel_rows, "funnel_month": funnel_month, "months": months,
            "source": f"/api/metrics/{metrics[0].name}?by=state,month&states={state}"}


def metric_page(request, site, user: User, name: str, states_text: str | None,
                months_text: str | None) -> dict:
    data = site.data
    metric = data.metric(name)
    states = parse_states(states_text)
    months = parse_months(months_text)
    by = ("state", "month") if "state" in metric.dimensions else ("month",)
    frame = data.query(user, [name], by=by, states=states, months=months).sort_values(list(by))
    request.state.view.metric = name
    request.state.view.states = ",".join(sorted(frame["state"].unique())) if "state" in frame else ""
    request.state.view.rows = len(frame)
    query = "&".join(p for p in (f"states={states_text}" if states else "",
                                  f"months={months_text}" if months else "") if p)
    return {"metric": metric, "frame": frame, "by": by,
            "rows": charts.records(frame.head(MAX_TABLE_ROWS)),
            "chart": charts.line_chart(frame, name, metric.unit, width=720, height=260),
            "states_text": states_text or "", "months_text": months_text or "",
            "source": f"/api/metrics/{name}?by={','.join(by)}" + (f"&{query}" if query else ""),
            "definition": metric.definition}


def records_page(request, site, user: User, name: str, state: str | None,
                 month_text: str | None) -> dict:
    data = site.data
    metric = data.metric(name)
    state = check_state(user, state)
    month = parse_month(month_text)
    frame = data.records(user, name, state, month)
    value_frame = data.query(user, [name], by=("state", "month"), states=[state],
                             months=(month, month))
    value = _num(value_frame[name].iloc[0]) if len(value_frame) else None
    request.state.view.metric = name
    request.state.view.states = state
    request.state.view.rows = len(frame)
    amount = float(frame["amount"].fillna(0).sum()) if "amount" in frame and len(frame) else 0.0
    return {"metric": metric, "state": state, "month": month, "value": value,
            "count": len(frame), "amount": amount, "columns": list(frame.columns),
            "rows": charts.records(frame.head(MAX_TABLE_ROWS)), "truncated": len(frame) > MAX_TABLE_ROWS,
            "csv": f"/download/records/{name}.csv?state={state}&month={month:%Y-%m}",
            "source": f"/api/records/{name}?state={state}&month={month:%Y-%m}"}


@dataclass
class ExploreQuery:
    names: list[str] = field(default_factory=list)
    by: tuple[str, ...] = ("state", "month")
    states: list[str] | None = None
    months: tuple[dt.date, dt.date] | None = None
    text: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, metrics: str | None, by: str | None, states: str | None,
              months: str | None) -> "ExploreQuery":
        names = parse_names(metrics) if metrics else []
        return cls(names, parse_by(by), parse_states(states), parse_months(months),
                   {"metrics": ",".join(names), "by": by or "state,month",
                    "states": states or "", "months": months or ""})

    def query_string(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.text.items() if v)


def explore_frame(site, user: User, q: ExploreQuery) -> pd.DataFrame:
    frame = site.data.query(user, q.names, by=q.by, states=q.states, months=q.months)
    return frame.sort_values(list(q.by)).reset_index(drop=True) if len(frame) else frame


def explore(request, site, user: User, q: ExploreQuery) -> dict:
    metrics = site.data.metrics()
    context = {"all_metrics": metrics, "q": q, "rows": [], "columns": [], "chart": None,
               "count": 0, "csv": None}
    if not q.names:
        return context
    frame = explore_frame(site, user, q)
    first = site.data.metric(q.names[0])
    others = [d for d in q.by if d != "month"]
    if "month" in q.by and len(frame):
        plot = frame.copy()
        if others:
            plot["series"] = plot[others].astype(str).agg(" ".join, axis=1)
        chart = charts.line_chart(plot, first.name, first.unit, title=first.label,
                                  color="series" if others else None, width=720,
                                  height=260)
    elif len(frame) and q.by:
        plot = frame.copy()
        plot["category"] = plot[list(q.by)].astype(str).agg(" ".join, axis=1)
        chart = charts.bar_chart(plot, first.name, first.unit, "category")
    else:
        chart = None
    request.state.view.metric = ",".join(q.names)
    request.state.view.states = (",".join(sorted(frame["state"].unique()))
                                 if "state" in frame else ",".join(q.states or []))
    request.state.view.rows = len(frame)
    context.update(rows=charts.records(frame.head(MAX_TABLE_ROWS)), columns=list(frame.columns),
                   chart=chart, count=len(frame),
                   csv=f"/download/explore.csv?{q.query_string()}",
                   source=f"/api/metrics/{q.names[0]}?by={','.join(q.by)}")
    return context
