"""The report site (``bdt serve``): KPI scorecard, state, metric, drill-down, explain and explore
pages over the metric layer, with sign-in, roles, embedded links and usage tracking.

Modules, one job each:

- ``store.py``: the site's own SQLite database (``$BDT_HOME/site/site.sqlite``, WAL mode);
- ``users.py``: users, roles, argon2 password hashes (``bdt users add``, the demo user);
- ``auth.py``: sessions (signed cookies), CSRF tokens, sign-in throttling, the proxy header;
- ``scope.py``: parsing query values and enforcing a user's states before any query runs;
- ``usage.py``: one durable row per page view, API call and download (``bdt usage``);
- ``embed.py``: signed, expiring links to one page for given states (``/embed/<token>``);
- ``targets.py``: the KPI targets the scorecard marks states against (``targets.yaml``);
- ``charts.py``: Vega-Lite specs with their data inlined, rendered in the page as SVG;
- ``pages.py`` / ``api.py``: the HTML pages and the JSON/CSV endpoints;
- ``app.py``: the FastAPI application that ties them together; ``server.py``: uvicorn;
- ``assets.py``: the Dagster asset ``usage/page_views`` (usage rows into the warehouse).

The site reads numbers only through ``bdt_platform.metrics.MetricLayer`` (``snapshot=True``: a
read-only copy of the warehouse each build publishes), never SQL of its own.
"""

from __future__ import annotations


def create_demo_user(settings):
    """Create (or reset) the demo admin user; returns ``(username, password)``. ``bdt demo``
    prints them with the command that opens the site."""
    from bdt_platform.site.users import create_demo_user as create

    return create(settings)


__all__ = ["create_demo_user"]
