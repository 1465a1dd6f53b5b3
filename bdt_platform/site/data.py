"""The site's only road to numbers: the metric layer, with the user's states always passed.

``SiteData.query`` and ``SiteData.records`` take the :class:`~bdt_platform.site.users.User`
and enforce their scope (``scope.allowed_states``) before calling ``layer.query`` /
``layer.records``; results are filtered to the scope once more, as a belt over the braces.
The layer reads the published snapshot (``snapshot=True``) and is refreshed once per request,
so a new build shows up without a restart and never waits on ``bdt build``'s lock.
"""

from __future__ import annotations

import datetime as dt
import threading

import pandas as pd

from bdt_platform.site.scope import BadRequest, NotFound, allowed_states, check_state
from bdt_platform.site.users import User


class NoData(RuntimeError):
    """Nothing has been built yet (no snapshot to read): 503 with what to run."""


class SiteData:
    def __init__(self, settings):
        self.settings = settings
        self._layer = None
        self._lock = threading.Lock()

    @property
    def layer(self):
        if self._layer is None:
            with self._lock:
                if self._layer is None:
                    from bdt_platform.metrics import MetricLayer

                    self._layer = MetricLayer.for_settings(self.settings, snapshot=True)
        return self._layer

    def refresh(self) -> None:
        try:
            self.layer.refresh()
        except Exception as exc:  # noqa: BLE001 - a missing snapshot, whatever its class
            if "snapshot" in type(exc).__name__.lower() or "snapshot" in str(exc).lower():
                raise NoData(f"no published data yet ({exc}): run bdt build") from exc
            raise

    def _call(self, fn, *args, **kwargs):
        from bdt_platform.metrics import MetricError

        try:
            return fn(*args, **kwargs)
        except MetricError as exc:
            if getattr(exc, "status", 400) == 404:
                raise NotFound(str(exc)) from None
            raise BadRequest(str(exc)) from None
        except Exception as exc:
            if type(exc).__name__ == "SnapshotMissing":
                raise NoData(f"no published data yet ({exc}): run bdt build") from exc
            raise

    def metrics(self):
        return self._call(self.layer.metrics)

    def metric(self, name: str):
        return self._call(self.layer.metric, name)

    def months(self) -> list[dt.date]:
        return self._call(self.layer.months)

    def states(self, user: User) -> list[str]:
        return [s for s in self._call(self.layer.states) if user.can_see(s)]

    def query(self, user: User, names: list[str], by=("state", "month"),
              states: list[str] | None = None, months=None) -> pd.DataFrame:
        scope = allowed_states(user, states)
        for name in names:
            self.metric(name)  # 404 for an unknown metric before anything else
        frame = self._call(self.layer.query, list(names), by=tuple(by), states=scope,
                           months=months)
        if user.states is not None and "state" in frame.columns:
            frame = frame[frame["state"].isin(user.states)].reset_index(drop=True)
        return frame

    def records(self, user: User, name: str, state: str, month: dt.date) -> pd.DataFrame:
        state = check_state(user, state)
        self.metric(name)
        return self._call(self.layer.records, name, state, month)
