"""Links from the Dagster UI to the report site: each report partition's materialization
carries the URL of its page (``BDT_SITE_URL``, default ``http://127.0.0.1:8080``)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import dagster as dg


class ReportSiteLinks(dg.ConfigurableResource):
    """Where the report site (``bdt serve``) answers, for links in asset metadata."""

    url: str = "http://127.0.0.1:8080"

    def explain(self, state: str, month: dt.date) -> str:
        """The partition's "why did it change" page."""
        return f"{self.url.rstrip('/')}/explain?{urlencode({'state': state, 'month': f'{month:%Y-%m}'})}"

    def state(self, state: str) -> str:
        return f"{self.url.rstrip('/')}/states/{state}"
