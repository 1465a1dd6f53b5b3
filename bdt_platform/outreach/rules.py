"""Who is mailed in a state x month: the outreach rules as one pure function of DataFrames.

``select_mail_list`` applies, in this order, and counts each person left out under the first
rule that leaves them out (``EXCLUSION_REASONS``):

1. ``enrolled_in_everything``: the person is enrolled in (or was approved for, per the state's
   outcomes) every program the partners found them eligible for;
2. ``do_not_contact``: the person token is on the configured do-not-contact list;
3. ``opted_out``: the person opted out in a text/call campaign (the nudge events);
4. ``undeliverable_address``: the last piece we mailed them came back ``returned`` or
   ``undeliverable`` and no newer address has arrived since (same address fingerprint);
5. ``mailed_recently``: we mailed them less than ``history_days`` days ago (our own mail
   history; the vendor's mailing date when the returns report one);
6. ``over_budget``: eligible, but beyond the state x month's pieces budget.

Rows of several partners about one person become one candidate (``duplicate_rows`` counts the
extra rows): eligible programs and enrolments are the union over the rows, the mailing address
comes from the first row in (partner, record id) order. Of the budget, ``control_share`` is
filled by a lottery (``ids.control_draw``) among all eligible people (``arm =
random_control``), the rest in rank order (``arm = model``): by the model's score when there is
one, else by the number of programs still to win. ``rank`` numbers the list 1..n in that order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import pandas as pd

from bdt_platform.outreach import ids

EXCLUSION_REASONS = ("enrolled_in_everything", "do_not_contact", "opted_out",
                     "undeliverable_address", "mailed_recently", "over_budget")
RETURNED_STATUSES = ("returned", "undeliverable")
ARM_MODEL, ARM_CONTROL = "model", "random_control"
LIST_COLUMNS = ["state", "month", "person_token", "mail_piece_id", "score", "rank", "arm",
                "model_version", "programs_to_offer", "address_hash", "language",
                "source_partner", "source_record_id"]


@dataclass
class MailListResult:
    rows: pd.DataFrame
    exclusions: dict[str, int] = field(default_factory=dict)
    candidates: int = 0  # distinct people on the month's eligibility files
    duplicate_rows: int = 0
    eligible: int = 0  # people left after every rule but the budget
    budget: int = 0


def _codes(text) -> set[str]:
    if text is None or (isinstance(text, float) and pd.isna(text)) or text is pd.NA:
        return set()
    return {c.strip().upper() for c in str(text).split(";") if c.strip()}


def code_pairs(keys: pd.Series, texts: pd.Series, key: str = "person_token") -> pd.DataFrame:
    """(``key``, code) for every program code of ``texts`` (``_codes`` of each value, beside
    the same row's value of ``keys``), distinct, a whole column at a time."""
    present = texts.notna()
    codes = texts[present].astype(str).str.split(";").explode().str.strip().str.upper()
    pairs = pd.DataFrame({key: keys[present].reindex(codes.index).to_numpy(),
                          "code": codes.to_numpy()})
    return pairs[pairs["code"].fillna("") != ""].drop_duplicates()


def _programs_to_offer(rows: pd.DataFrame, enrolled: pd.DataFrame | None) -> dict[str, list]:
    """Per person token: the programs some row lists them eligible for that no row lists them
    enrolled in and no approval (``enrolled``: person_token, program) covers, sorted."""
    eligible = code_pairs(rows["person_token"], rows["programs_eligible"])
    have = set(zip(*code_pairs(rows["person_token"], rows["programs_enrolled"]).to_dict("list")
                   .values()))
    if enrolled is not None and not enrolled.empty:
        have.update(zip(enrolled["person_token"].tolist(),
                        (str(program).upper() for program in enrolled["program"].tolist())))
    by_token: dict[str, list] = {}
    for token, code in sorted(zip(eligible["person_token"].tolist(), eligible["code"].tolist())):
        if (token, code) not in have:
            by_token.setdefault(token, []).append(code)
    return by_token


def address_hash(line1, line2, city, zip_code) -> str:
    """A fingerprint of a mailing address (upper-cased, spaces squeezed, ZIP5): equal when
    the post office would see the same address. The mail list keeps it, not the address."""
    def norm(value) -> str:
        return " ".join(str(value or "").upper().split()) if not pd.isna(value) else ""
    text = "|".join([norm(line1), norm(line2), norm(city), norm(zip_code)[:5]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _normalized(values: pd.Series | None, length: int) -> list[str]:
    """``address_hash``'s normalizing of each value (upper case, whitespace squeezed; empty
    for a missing or empty value)."""
    if values is None:
        return [""] * length
    return [" ".join(str(value or "").upper().split()) if not pd.isna(value) else ""
            for value in values.tolist()]


def address_hashes(rows: pd.DataFrame) -> list[str]:
    """``address_hash`` of each row's address_line1, address_line2, city and zip."""
    parts = [_normalized(rows.get(name), len(rows))
             for name in ("address_line1", "address_line2", "city", "zip")]
    return [hashlib.sha256(f"{line1}|{line2}|{city}|{zip_code[:5]}".encode()).hexdigest()[:16]
            for line1, line2, city, zip_code in zip(*parts)]


def _days_before(month: dt.date, when) -> int:
    return (pd.Timestamp(month) - pd.Timestamp(when)).days


def select_mail_list(state: str, month: dt.date, eligibility: pd.DataFrame, *,
                     enrolled: pd.DataFrame | None = None,
                     history: pd.DataFrame | None = None,
                     returns: pd.DataFrame | None = None,
                     opted_out: set[str] | frozenset = frozenset(),
                     do_not_contact: dict[str, str] | None = None,
                     budget: int, control_share: float, history_days: int = 90,
                     scores: pd.DataFrame | None = None,
                     model_version: str | None = None) -> MailListResult:
    """The mail list of ``state`` x ``month``.

    ``eligibility``: the month's partner rows (person_token, record_id, _partner,
    programs_eligible, programs_enrolled, address_line1, address_line2, city, zip, language).
    ``enrolled``: (person_token, program) approvals known so far. ``history``: our earlier mail
    list rows (person_token, month, mail_piece_id, address_hash), months before ``month`` only.
    ``returns``: the vendor's reports (mail_piece_id, mailed_date, status, status_date).
    ``scores``: (person_token, score) from the model, or None.
    """
    result = MailListResult(rows=pd.DataFrame(columns=LIST_COLUMNS), budget=int(budget),
                            exclusions={reason: 0 for reason in EXCLUSION_REASONS})
    if eligibility.empty:
        return result
    rows = eligibility.sort_values(["person_token", "_partner", "record_id"], kind="stable")
    result.duplicate_rows = int(len(rows) - rows["person_token"].nunique())
    rows = rows[rows["person_token"].notna()]
    tokens = set(rows["person_token"])
    # Only the month's people are looked up below: the rest of the inputs is left out first
    # (at volume they are a year of every state's approvals, pieces and returns).
    if enrolled is not None:
        enrolled = enrolled[enrolled["person_token"].isin(tokens)]
    if history is not None:
        history = history[history["person_token"].isin(tokens)]
    if returns is not None and history is not None:
        returns = returns[returns["mail_piece_id"].isin(set(history["mail_piece_id"]))]
    to_offer = _programs_to_offer(rows, enrolled)
    first = rows.drop_duplicates("person_token", keep="first")  # in token order
    column = {name: (first[name].tolist() if name in first.columns else [None] * len(first))
              for name in ("person_token", "language", "_partner", "record_id")}
    people = [{"person_token": token,
               "to_offer": to_offer.get(token, []),
               "address_hash": address,
               "language": language,
               "source_partner": partner,
               "source_record_id": record_id}
              for token, address, language, partner, record_id
              in zip(column["person_token"], address_hashes(first), column["language"],
                     column["_partner"], column["record_id"])]
    result.candidates = len(people)
    dnc = do_not_contact or {}

    # The person's last piece (ours), and its fate at the vendor.
    last_piece: dict[str, dict] = {}
    last_returned: dict[str, str] = {}
    if history is not None and not history.empty:
        hist = history[pd.to_datetime(history["month"]).dt.date < month].copy()
        hist["mailed_on"] = pd.to_datetime(hist["month"])
        if returns is not None and not returns.empty:
            # Stable: of two reports of a piece on one date, the later row wins (whatever
            # other rows the frame holds).
            fate = returns.sort_values("status_date", kind="stable").drop_duplicates(
                "mail_piece_id", keep="last")
            hist = hist.merge(fate[["mail_piece_id", "mailed_date", "status"]],
                              on="mail_piece_id", how="left")
            known = hist["mailed_date"].notna()
            hist.loc[known, "mailed_on"] = pd.to_datetime(hist.loc[known, "mailed_date"])
        else:
            hist["status"] = None
        hist = hist.sort_values(["person_token", "mailed_on", "mail_piece_id"])
        for row in hist.itertuples(index=False):
            last_piece[row.person_token] = {"mailed_on": row.mailed_on}
            if row.status in RETURNED_STATUSES:
                last_returned[row.person_token] = row.address_hash
            elif isinstance(row.status, str):
                last_returned.pop(row.person_token, None)  # delivered since: address is good

    kept = []
    for person in people:
        token = person["person_token"]
        if not person["to_offer"]:
            reason = "enrolled_in_everything"
        elif token in dnc:
            reason = "do_not_contact"
        elif token in opted_out:
            reason = "opted_out"
        elif last_returned.get(token) == person["address_hash"]:
            reason = "undeliverable_address"
        elif (token in last_piece
              and _days_before(month, last_piece[token]["mailed_on"]) < history_days):
            reason = "mailed_recently"
        else:
            kept.append(person)
            continue
        result.exclusions[reason] += 1
    result.eligible = len(kept)
    if not kept:
        return result

    pool = pd.DataFrame(kept)
    pool["state"], pool["month"] = state, month
    pool["programs_to_offer"] = pool["to_offer"].map(";".join)
    pool["n_offer"] = pool["to_offer"].map(len)
    pool["tie"] = ids.tie_breaks(pool["person_token"].tolist(), state, month)
    pool["lottery"] = ids.control_draws(pool["person_token"].tolist(), state, month)
    if scores is not None and not scores.empty:
        pool = pool.merge(scores[["person_token", "score"]], on="person_token", how="left")
        pool["score"] = pool["score"].astype("float64")
        order = ["score", "n_offer", "tie"]
        ascending = [False, False, True]
    else:
        pool["score"] = float("nan")
        order, ascending = ["n_offer", "tie"], [False, True]
    pool = pool.sort_values(order, ascending=ascending, na_position="last", kind="stable")

    budget = max(0, int(budget))
    n_control = min(len(pool), int(round(budget * control_share)))
    control = set(pool.nsmallest(n_control, "lottery")["person_token"]) if n_control else set()
    ranked = pool[~pool["person_token"].isin(control)].head(max(0, budget - n_control))
    chosen = set(ranked["person_token"]) | control
    result.exclusions["over_budget"] = int(len(pool) - len(chosen))
    out = pool[pool["person_token"].isin(chosen)].copy()  # still in rank order
    out["rank"] = range(1, len(out) + 1)
    out["arm"] = [ARM_CONTROL if t in control else ARM_MODEL for t in out["person_token"]]
    out["model_version"] = model_version if scores is not None and not scores.empty else None
    out["mail_piece_id"] = [ids.mail_piece_id(state, month, t) for t in out["person_token"]]
    if out["mail_piece_id"].duplicated().any():
        raise ValueError(f"mail_piece_id collision in {state} {month:%Y-%m}")
    result.rows = out[LIST_COLUMNS].reset_index(drop=True)
    return result
