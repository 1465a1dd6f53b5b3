"""Usage: one row per page view, API call and download the site served, in ``site.sqlite``.

A row: ``ts`` (UTC, ISO 8601), ``username`` (empty when not signed in; ``embed:<admin>`` for an
embedded link), ``path`` (with its query string), ``metric`` (the metric(s) shown, comma
separated), ``states`` (the states whose numbers were shown, comma separated; empty for none
or all), ``rows`` (data rows returned), ``ms`` (server time), ``kind`` (page, api, download,
embed, auth), ``status`` (HTTP status). Refused requests are recorded too: they are who tried
what. The Dagster asset ``usage/page_views`` copies these rows into the warehouse.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bdt_platform.site.store import SiteStore

COLUMNS = ("ts", "username", "path", "metric", "states", "rows", "ms", "kind", "status")


@dataclass
class View:
    """What a handler says it showed; the middleware adds the rest and writes the row."""

    metric: str | None = None
    states: str | None = None
    rows: int | None = None
    kind: str = "page"


def record(store: SiteStore, *, username: str | None, path: str, view: View, ms: float,
           status: int, ts: dt.datetime | None = None) -> None:
    ts = ts or dt.datetime.now(dt.timezone.utc)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO page_views (ts, username, path, metric, states, rows, ms, kind, status) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), username or "", path[:2000], view.metric,
             view.states, view.rows, round(ms, 3), view.kind, status))


def rows(store: SiteStore, since: dt.date | None = None) -> list[dict]:
    """Every usage row (oldest first), or those from ``since`` (a UTC date) on."""
    sql = f"SELECT {', '.join(COLUMNS)} FROM page_views"
    params: tuple = ()
    if since is not None:
        sql += " WHERE ts >= ?"
        params = (since.isoformat(),)
    return [dict(r) for r in store.read(sql + " ORDER BY id", params)]


def weekly_summary(store: SiteStore, weeks: int = 8) -> dict[str, list[dict]]:
    """The usage page's tables, per ISO week (Monday): most viewed metrics, most viewed pages
    (path without its query) and who viewed them, over the last ``weeks`` weeks."""
    since = (dt.date.today() - dt.timedelta(weeks=weeks)).isoformat()
    week = "date(substr(ts, 1, 10), 'weekday 0', '-6 days')"
    base = f"FROM page_views WHERE ts >= ? AND status < 400"
    metrics = store.read(
        f"SELECT {week} AS week, metric, count(*) AS views, count(DISTINCT username) AS users, "
        f"group_concat(DISTINCT username) AS who {base} AND metric IS NOT NULL AND metric != '' "
        "GROUP BY week, metric ORDER BY week DESC, views DESC", (since,))
    pages = store.read(
        f"SELECT {week} AS week, CASE WHEN instr(path, '?') > 0 THEN substr(path, 1, "
        "instr(path, '?') - 1) ELSE path END AS page, count(*) AS views, "
        f"count(DISTINCT username) AS users, group_concat(DISTINCT username) AS who {base} "
        "GROUP BY week, page ORDER BY week DESC, views DESC", (since,))
    users = store.read(
        f"SELECT {week} AS week, username, count(*) AS views, "
        f"sum(kind = 'download') AS downloads {base} GROUP BY week, username "
        "ORDER BY week DESC, views DESC", (since,))
    return {"metrics": [dict(r) for r in metrics], "pages": [dict(r) for r in pages],
            "users": [dict(r) for r in users]}
