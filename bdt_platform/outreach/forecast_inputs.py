"""What the simulation (``simulate.py``) reads from the warehouse and the lake, for one month:

* ``pools``: per state, the people the mail-list rules keep before the budget cut (the rules
  themselves, ``mail_list.compute_mail_lists``, run with no budget and no control share), with
  the response model's score, their rank and their place in the random-control lottery;
* ``approval_rate``: of the people on the lists of earlier months who applied within
  ``model.label_days`` of their month's mailing, those with an application approved (the
  readouts' ``applied`` and ``approved``, over the model's label window);
* ``held_out_calibration``: the version in force on its own held-out month (``test_month`` in
  ``ml.model_versions``): applicants observed among its candidates against the sum of its scores;
* ``list_outcomes``: who on a month's lists applied and was approved within the label window
  (the forecast's actuals).

Used by ``reports/outreach_forecast`` and ``bdt outreach simulate``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import uuid

import numpy as np
import pandas as pd

from bdt_platform.ml import features, train, versions
from bdt_platform.ml.assets import SCORES_TABLE, VERSIONS_TABLE, load_model, load_tables
from bdt_platform.core import digests
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.outreach import ids, mail_list, rules
from bdt_platform.outreach.config import OutreachConfig
from bdt_platform.outreach.simulate import POOL_COLUMNS, ApprovalRate, Calibration
from bdt_platform.storage.warehouse import Warehouse

#: More pieces than any state's pool: the rules without a budget cut.
NO_BUDGET = 10**9


class NoForecast(LookupError):
    """The warehouse has nothing to forecast from (no scores, no version, no such month)."""


def scored_months(warehouse: Warehouse) -> list[dt.date]:
    """Months with scores in ``ml.propensity_scores`` (a model in force), oldest first."""
    if not warehouse.table_exists(SCORES_TABLE):
        return []
    found = warehouse.query(f"select distinct month from {SCORES_TABLE} order by month")
    return [pd.Timestamp(m).date() for m in found["month"]]


def scored_states(warehouse: Warehouse, month: dt.date) -> list[str]:
    found = warehouse.query(f"select distinct state from {SCORES_TABLE} "
                            f"where month = date '{month}' order by state")
    return list(found["state"])


#: What the rules of a month are, besides their inputs: a change in any of these modules is a
#: change of every month's pools.
RULES_CODE_VERSION = source_code_version(__file__, mail_list.__file__, rules.__file__,
                                         ids.__file__)


class PoolStore:
    """The pools of earlier forecasts (``kept_by_rules``), in the lake under
    ``outreach/forecast_pools/<digest>.parquet``, by a digest of everything the month's rules
    read (``SharedInputs.digest``): a month whose inputs did not change since the last build
    is not run through the rules again. ``prune`` keeps only the pools the last forecast used."""

    FOLDER = "outreach/forecast_pools"

    def __init__(self, lake):
        self.lake = lake
        self.used: set[str] = set()
        self.taken = self.made = 0

    def _path(self, digest: str):
        return self.lake.path(f"{self.FOLDER}/{digest}.parquet")

    def get(self, digest: str) -> pd.DataFrame | None:
        self.used.add(digest)
        path = self._path(digest)
        if not path.exists():
            return None
        self.taken += 1
        return pd.read_parquet(io.BytesIO(path.read_bytes()))

    def put(self, digest: str, kept: pd.DataFrame) -> None:
        self.used.add(digest)
        self.made += 1
        buffer = io.BytesIO()
        kept.to_parquet(buffer, index=False)
        path = self._path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.lake.path(f"{self.FOLDER}/.{digest}.{uuid.uuid4().hex[:8]}")
        partial.write_bytes(buffer.getvalue())
        partial.rename(path)  # whole or absent: a killed build leaves no half file

    def prune(self) -> int:
        """Delete the pools this forecast did not use; how many."""
        folder = self.lake.path(self.FOLDER)
        if not folder.exists():
            return 0
        old = [p for p in folder.iterdir() if p.name.removesuffix(".parquet") not in self.used]
        for path in old:
            path.unlink()
        return len(old)


def _row_hashes(frame: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray | None, bytes]:
    """(a 64-bit hash per row, the rows' month as a month number or None, the columns)."""
    if frame is None:
        return np.zeros(0, dtype=np.uint64), None, b"none"
    months = None
    if "month" in frame.columns:
        months = pd.to_datetime(frame["month"]).to_numpy().astype("datetime64[M]").astype(
            np.int64)
    return digests.row_hashes(frame), months, digests.columns(frame)


class SharedInputs:
    """``mail_list.load_shared_inputs`` of every state, read once however many months' rules
    are run (the forecast runs them for every scored month and each version's held-out
    month: reading the approvals, returns and lists again for each cost more than the rules).
    ``store``: a ``PoolStore`` to take pools whose inputs did not change from."""

    def __init__(self, warehouse: Warehouse, store: PoolStore | None = None):
        self.warehouse = warehouse
        self.store = store
        self._shared: dict | None = None
        self._hashes: dict[str, tuple] = {}
        #: ``kept_by_rules`` results by (month, states): a month's pools and, when it is a
        #: version's held-out month, that version's calibration run the same rules.
        self.kept: dict[tuple[dt.date, tuple[str, ...]], pd.DataFrame] = {}

    def _loaded(self) -> dict:
        if self._shared is None:
            states = list(self.warehouse.query(
                "select distinct state from staging.stg_partners__eligibility")["state"])
            self._shared = mail_list.load_shared_inputs(self.warehouse, states)
            self._hashes = {name: _row_hashes(frame) for name, frame in self._shared.items()}
        return self._shared

    def for_pairs(self, pairs: list[tuple[str, dt.date]]) -> dict:
        return mail_list.inputs_for(self._loaded(), pairs)

    def digest(self, month: dt.date, states: list[str], eligibility: pd.DataFrame,
               config: OutreachConfig) -> str:
        """Everything the rules of ``month`` in ``states`` read: the code, the configuration,
        the month's eligibility rows and scores, the approvals, opt-outs and vendor returns up
        to the month, and every list before it (of any state: a person may move). More than
        the rules read of some (all of a table's rows up to the month), never less."""
        self._loaded()
        number = month.year * 12 + month.month - 1 - (1970 * 12)  # datetime64[M]'s number
        digest = hashlib.sha256(
            f"{RULES_CODE_VERSION}|{config!r}|{month}|{','.join(states)}".encode())
        for name in sorted(self._hashes):
            hashes, months, columns = self._hashes[name]
            if months is not None:
                if name == "history":
                    keep = months < number
                elif name == "scores":
                    in_states = self._shared[name]["state"].isin(states).to_numpy()
                    keep = (months == number) & in_states
                else:
                    keep = months <= number
                hashes = hashes[keep]
            digest.update(f"|{name}|".encode() + columns + digests.fold(hashes))
        rows, _, columns = _row_hashes(eligibility)
        digest.update(b"|eligibility|" + columns + digests.fold(rows))
        return digest.hexdigest()


def kept_by_rules(warehouse: Warehouse, month: dt.date, states: list[str],
                  config: OutreachConfig, shared: SharedInputs | None = None) -> pd.DataFrame:
    """Every person the mail-list rules keep in ``states`` x ``month`` before the budget cut
    (``simulate.POOL_COLUMNS``: score, the list's rank, the lottery draw); ``score`` is empty
    for months without one. ``shared``: the inputs months share, when already read."""
    pairs = [(state, month) for state in states]
    if not pairs:
        return pd.DataFrame(columns=POOL_COLUMNS)
    if shared is not None and (month, tuple(states)) in shared.kept:
        return shared.kept[(month, tuple(states))].copy()
    kept = _kept_by_rules(warehouse, month, states, pairs, config,
                          shared or SharedInputs(warehouse))
    if shared is not None:
        shared.kept[(month, tuple(states))] = kept.copy()
    return kept


def _kept_by_rules(warehouse: Warehouse, month: dt.date, states: list[str], pairs,
                   config: OutreachConfig, shared: SharedInputs) -> pd.DataFrame:
    eligibility = mail_list.load_eligibility(warehouse, states, month, month)
    unlimited = dataclasses.replace(config, budget_default=NO_BUDGET, budget_states={},
                                    budget_partitions={}, control_share=0.0)
    digest = None
    if shared.store is not None:
        digest = shared.digest(month, states, eligibility, unlimited)
        kept = shared.store.get(digest)
        if kept is not None:
            return kept
    kept = _run_rules(shared.for_pairs(pairs), eligibility, month, pairs, unlimited)
    if digest is not None:
        shared.store.put(digest, kept)
    return kept


def _run_rules(inputs: dict, eligibility: pd.DataFrame, month: dt.date, pairs,
               unlimited: OutreachConfig) -> pd.DataFrame:
    inputs["eligibility"] = eligibility
    results = mail_list.compute_mail_lists(inputs, pairs, unlimited)
    frames = []
    for (state, _), result in sorted(results.items()):
        rows = result.rows
        if rows.empty:
            continue
        frames.append(pd.DataFrame({
            "state": state, "person_token": rows["person_token"].to_numpy(),
            "score": rows["score"].astype("float64").to_numpy(),
            "rank": rows["rank"].astype("int64").to_numpy(),
            "lottery": [ids.control_draw(t, state, month) for t in rows["person_token"]]}))
    if not frames:
        return pd.DataFrame(columns=POOL_COLUMNS)
    return pd.concat(frames, ignore_index=True)[POOL_COLUMNS]


def pools(warehouse: Warehouse, month: dt.date, states: list[str], config: OutreachConfig,
          shared: SharedInputs | None = None) -> pd.DataFrame:
    """``kept_by_rules`` for a scored month: every person has the model's score."""
    out = kept_by_rules(warehouse, month, states, config, shared)
    if out["score"].isna().any():
        missing = sorted(set(out.loc[out["score"].isna(), "state"]))
        raise NoForecast(f"{month:%Y-%m}: people without a score in {', '.join(missing)}; "
                         "run `bdt build`")
    return out


def list_outcomes(warehouse: Warehouse, label_days: int, months: list[dt.date] | None = None
                  ) -> pd.DataFrame:
    """One row per person on ``outreach.mail_list`` (state, month, person_token, arm):
    ``applied`` (an application submitted within ``label_days`` days from the first of the
    month, the model's label) and ``approved`` (one of those applications approved)."""
    where = ""
    if months:
        where = " where month in (" + ", ".join(f"date '{m}'" for m in months) + ")"
    people = warehouse.query("select state, month, person_token, arm from outreach.mail_list"
                             + where)
    people["month"] = pd.to_datetime(people["month"]).dt.date
    apps = warehouse.query(
        "select c.person_token, a.application_id, a.submitted_at "
        "from staging.stg_casemgmt__applications a "
        "join staging.stg_casemgmt__clients c on c.client_id = a.client_id "
        "where c.person_token is not null")
    approved_ids = set(warehouse.query(
        "select application_id from marts.fct_enrollment_outcomes where is_approved"
    )["application_id"])
    people["applied"], people["approved"] = 0, 0
    if people.empty or apps.empty:
        return people
    people["applied"] = features.labels(people, apps, label_days)
    good = apps[apps["application_id"].isin(approved_ids)]
    people["approved"] = features.labels(people, good, label_days) if len(good) else 0
    return people


def approval_rate(outcomes: pd.DataFrame, month: dt.date) -> ApprovalRate:
    """Approved over applied among the people on the lists of the months before ``month``."""
    before = outcomes[outcomes["month"] < month]
    return ApprovalRate(approved=int(before["approved"].sum()),
                        applied=int(before["applied"].sum()))


def version_in_force(warehouse: Warehouse, month: dt.date) -> pd.Series:
    if not warehouse.table_exists(VERSIONS_TABLE):
        raise NoForecast("no response model yet (ml.model_versions is missing); run `bdt build`")
    table = warehouse.query(f"select * from {VERSIONS_TABLE}")
    row = versions.in_force_for(table, month)
    if row is None:
        raise NoForecast(f"no promoted model version scores {month:%Y-%m}; run `bdt build`")
    return row


def feature_rows(warehouse: Warehouse) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's feature rows of every month (each from its month and before only) and the
    applications: what ``held_out_calibration`` scores and labels."""
    eligibility, applications = load_tables(warehouse)
    return features.build_features(eligibility, applications), applications


def held_out_calibration(warehouse: Warehouse, lake, version: pd.Series,
                         config: OutreachConfig, level: float = 0.95,
                         rows: tuple[pd.DataFrame, pd.DataFrame] | None = None,
                         shared: SharedInputs | None = None) -> Calibration:
    """The version on its held-out month (never trained on), among the people the list rules
    kept there before the budget cut (the population a forecast draws from: the rules select
    on what the model does not see, such as a letter that came back): applicants observed
    within the label window against the sum of the version's scores. ``rows``:
    ``feature_rows`` when already read."""
    test_month = pd.Timestamp(version["test_month"]).date()
    frame, applications = rows if rows is not None else feature_rows(warehouse)
    frame = frame[frame["month"] == test_month]
    kept = kept_by_rules(warehouse, test_month, sorted(set(frame["state"])), config, shared)
    frame = frame.merge(kept[["state", "person_token"]], on=["state", "person_token"])
    if frame.empty:
        return Calibration(observed=0, expected=0.0, variance=0.0, level=level)
    applied = features.labels(frame, applications, config.label_days)
    p = train.score(load_model(lake, version), frame)
    return Calibration(observed=int(applied.sum()), expected=float(np.sum(p)),
                       variance=float(np.sum(p * (1 - p))), level=level)


def window_closed(month: dt.date, label_days: int, extracted_at: dt.datetime | None) -> bool:
    """The month's label window is over and case management was read after it ended: the
    actual count is final."""
    if extracted_at is None:
        return False
    end = dt.datetime.combine(month, dt.time()) + dt.timedelta(days=int(label_days))
    return extracted_at.replace(tzinfo=None) >= end
