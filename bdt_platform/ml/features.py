"""The response model's features and label, from warehouse tables only.

One row per person x state x month on the partners' eligibility files (``person_months``),
described by what the warehouse knows *before* that month: the month's eligibility row (the
first in partner, record-id order, as the mail list picks it) and the person's history of
eligibility files and case-management applications. Never an SSN, a name, an address, a phone,
an e-mail or a date of birth: ``FEATURES`` is the whole list, and the model reads nothing else.

The label (``labels``): the person applied (a case-management application submitted) within
``label_days`` days of the month's mailing, dated the first of the month.
"""

from __future__ import annotations

import datetime as dt
import threading

import numpy as np
import pandas as pd

from bdt_platform.core import digests, partitions as parts
from bdt_platform.outreach.rules import code_pairs

#: Languages with a column of their own (``en`` is the reference; the rest are ``other``).
LANGUAGES = ("es", "zh", "vi")

#: Every column the model reads, in order.
FEATURES = (
    "household_size",                # people in the household (eligibility file)
    "monthly_income_1000",           # monthly household income, in $1,000
    "programs_to_offer",             # programs eligible for and not enrolled in
    "programs_enrolled",             # programs already enrolled in
    *(f"language_{code}" for code in LANGUAGES),  # preferred language (0/1 each)
    "language_other",
    "months_since_first_eligible",   # months since the person's first eligibility file
    "prior_months_eligible",         # earlier months on an eligibility file
    "prior_applications",            # applications submitted before the month
)
KEY = ("state", "month", "person_token")

#: What the feature builder reads from ``staging.stg_partners__eligibility``.
ELIGIBILITY_COLUMNS = ("person_token", "state", "month", "_partner", "record_id",
                       "household_size", "monthly_income", "language", "programs_eligible",
                       "programs_enrolled")
#: What it reads of the applications (with the client's person token).
APPLICATION_COLUMNS = ("person_token", "submitted_at")


def _month_index(months: pd.Series) -> np.ndarray:
    values = pd.to_datetime(months)
    return (values.dt.year * 12 + values.dt.month - 1).to_numpy()


def person_months(eligibility: pd.DataFrame) -> pd.DataFrame:
    """One row per person x state x month: the first eligibility row's household, income and
    language; programs eligible and enrolled are the union over the partners' rows."""
    rows = eligibility[list(ELIGIBILITY_COLUMNS)].copy()
    rows["month"] = pd.to_datetime(rows["month"]).dt.date
    rows = rows[rows["person_token"].notna()].sort_values(
        ["state", "month", "person_token", "_partner", "record_id"], kind="stable")
    keys = list(KEY)
    first = rows.drop_duplicates(keys, keep="first").set_index(keys)
    # Each person x state x month numbered in key order (``first``'s order), and its program
    # codes as (number, code) pairs: the unions over its rows, counted without a Python call
    # per group (a year of 51 states at volume is ~30M groups).
    group = pd.Series(rows.groupby(keys, sort=True).ngroup().to_numpy(), index=rows.index)
    eligible = code_pairs(group, rows["programs_eligible"], key="group")
    enrolled = code_pairs(group, rows["programs_enrolled"], key="group")
    to_offer = eligible.merge(enrolled, on=["group", "code"], how="left", indicator=True)
    to_offer = to_offer[to_offer["_merge"] == "left_only"]
    out = first[["household_size", "monthly_income", "language"]].copy()
    out["programs_to_offer"] = np.bincount(to_offer["group"].to_numpy(dtype=np.int64),
                                           minlength=len(out))
    out["programs_enrolled"] = np.bincount(enrolled["group"].to_numpy(dtype=np.int64),
                                           minlength=len(out))
    return out.reset_index().sort_values(keys, kind="stable").reset_index(drop=True)


#: The last feature rows built in this process, by a digest of their inputs: a build runs the
#: response model, the scores and the forecast one after another in one process (Dagster's
#: in-process executor), each from the same tables - built once, not three times (~15 s each
#: for two years of a state at volume). Only frames up to ``MEMO_MAX_ROWS`` are kept (a year of
#: 51 states is ~18M rows: not worth the memory).
MEMO_MAX_ROWS = 4_000_000
_memo: dict[str, object] = {}
_memo_lock = threading.Lock()


def build_features(eligibility: pd.DataFrame, applications: pd.DataFrame) -> pd.DataFrame:
    """``KEY`` + ``FEATURES`` for every person x state x month of ``eligibility``, each row
    from the month's files and what happened before the month only. Inputs equal to the last
    call's (the same rows in any order, columns and types) give a copy of its result."""
    digest = digests.frames_digest(eligibility, applications)
    with _memo_lock:
        if _memo.get("digest") == digest:
            return _memo["frame"].copy()
    frame = _build_features(eligibility, applications)
    with _memo_lock:
        _memo.clear()
        if len(frame) <= MEMO_MAX_ROWS:
            _memo.update(digest=digest, frame=frame.copy())
    return frame


def _build_features(eligibility: pd.DataFrame, applications: pd.DataFrame) -> pd.DataFrame:
    frame = person_months(eligibility)
    frame["household_size"] = pd.to_numeric(frame["household_size"]).fillna(1).astype(float)
    frame["monthly_income_1000"] = (pd.to_numeric(frame["monthly_income"]).fillna(0.0)
                                    .astype(float) / 1000.0)
    language = frame["language"].fillna("").astype(str).str.strip().str.lower()
    for code in LANGUAGES:
        frame[f"language_{code}"] = (language == code).astype(float)
    frame["language_other"] = (~language.isin(("en", *LANGUAGES))).astype(float)
    for column in ("programs_to_offer", "programs_enrolled"):
        frame[column] = frame[column].astype(float)

    # History: the person's months on any eligibility file (any state), before this month.
    month_no = _month_index(frame["month"])
    seen = pd.DataFrame({"person_token": frame["person_token"], "m": month_no}
                        ).drop_duplicates().sort_values(["person_token", "m"])
    first_seen = seen.groupby("person_token")["m"].min()
    frame["months_since_first_eligible"] = (
        month_no - frame["person_token"].map(first_seen).to_numpy()).astype(float)
    seen["prior"] = seen.groupby("person_token").cumcount()
    prior = dict(zip(zip(seen["person_token"], seen["m"]), seen["prior"]))
    frame["prior_months_eligible"] = [float(prior[(t, m)])
                                      for t, m in zip(frame["person_token"], month_no)]

    frame["prior_applications"] = _count_before(frame, applications).astype(float)
    return frame[[*KEY, *FEATURES]]


def _application_days(applications: pd.DataFrame) -> pd.DataFrame:
    apps = applications[list(APPLICATION_COLUMNS)].dropna().copy()
    submitted = pd.to_datetime(apps["submitted_at"], utc=True)
    apps["day"] = submitted.dt.tz_localize(None).dt.floor("D")
    return apps[["person_token", "day"]].sort_values(["person_token", "day"], kind="stable")


def _day_numbers(values) -> np.ndarray:
    return pd.to_datetime(values).to_numpy().astype("datetime64[D]").astype(np.int64)


def _applications_between(frame: pd.DataFrame, applications: pd.DataFrame,
                          first_days: np.ndarray | None, end_days: np.ndarray) -> np.ndarray:
    """Per row of ``frame``, how many of its person's applications were submitted on a day
    from ``first_days`` (None: any day) up to, not including, ``end_days`` (day numbers, one
    per row).

    One sorted array of (person, day) keys and two binary searches for all rows at once - not
    one group and two searches per row (a year of people is millions of rows)."""
    apps = _application_days(applications)
    people = pd.Index(pd.unique(apps["person_token"]))
    app_days = _day_numbers(apps["day"])
    bounds = [end_days] if first_days is None else [first_days, end_days]
    lowest = min(int(values.min()) for values in [app_days, *bounds] if len(values))
    span = np.int64(1) << np.int64(32)  # more days than any calendar holds
    keys = np.sort(people.get_indexer(apps["person_token"]).astype(np.int64) * span
                   + (app_days - lowest))
    rows = people.get_indexer(frame["person_token"]).astype(np.int64)
    first = rows * span + (0 if first_days is None else first_days - lowest)
    counts = (np.searchsorted(keys, rows * span + (end_days - lowest), "left")
              - np.searchsorted(keys, first, "left"))
    return np.where(rows >= 0, counts, 0).astype(np.int64)


def _count_before(frame: pd.DataFrame, applications: pd.DataFrame) -> np.ndarray:
    """Per row, the person's applications submitted before the first of the row's month."""
    return _applications_between(frame, applications, None, _day_numbers(frame["month"]))


def labels(frame: pd.DataFrame, applications: pd.DataFrame, label_days: int) -> np.ndarray:
    """1 when the row's person submitted an application within ``label_days`` days from the
    first of the row's month (the month's mailing), else 0."""
    starts = _day_numbers(frame["month"])
    found = _applications_between(frame, applications, starts, starts + int(label_days))
    return (found > 0).astype(np.int64)


def label_complete(month: dt.date, label_days: int, scored_month: dt.date) -> bool:
    """A month's labels are all known when its window closes by the first of ``scored_month``."""
    return month + dt.timedelta(days=int(label_days)) <= scored_month and month < scored_month


def candidates(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a letter could be about: people with a program still to offer."""
    return frame[frame["programs_to_offer"] > 0]


def month_of(value) -> dt.date:
    return parts.month_start(pd.Timestamp(value).date())
