"""``outreach.mail_list``: whom we mail this month in each state, after every outreach rule.

The rules are ``rules.select_mail_list`` (a pure function, tested rule by rule); this module reads
its inputs from the warehouse, runs it per partition in month order (a month's list excludes
people on the lists of the months before it, including those built earlier in the same run),
writes the table and records one materialization per partition with every exclusion counted by
reason. The vendor file is ``outbox/mail_list`` (``bdt_platform/outbox/mail_list.py``).
"""


import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from bdt_platform.core import heartbeat, partitions as parts
from bdt_platform.core.partition_events import log_materializations
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.ml.assets import SCORES_KEY, SCORES_TABLE
from bdt_platform.outreach import rules
from bdt_platform.outreach.config import OutreachConfigResource
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["outreach", "mail_list"])
TABLE = "outreach.mail_list"
CODE_VERSION = source_code_version(__file__, rules.__file__)
UPSTREAM = [dg.AssetKey(["staging", "stg_partners__eligibility"]),
            dg.AssetKey(["staging", "stg_mailvendor__mailreturns"]),
            dg.AssetKey(["staging", "stg_nudgevendor__nudges"]),
            dg.AssetKey(["marts", "fct_enrollment_outcomes"]),
            SCORES_KEY]
RULES_CHECK = "rules"

SCHEMA = pa.schema([("state", pa.string()), ("month", pa.date32()),
                    ("person_token", pa.string()), ("mail_piece_id", pa.string()),
                    ("score", pa.float64()), ("rank", pa.int64()), ("arm", pa.string()),
                    ("model_version", pa.string()), ("programs_to_offer", pa.string()),
                    ("address_hash", pa.string()), ("language", pa.string()),
                    ("source_partner", pa.string()), ("source_record_id", pa.string())])


def _in(values) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def load_eligibility(warehouse: Warehouse, states, first: dt.date, last: dt.date
                     ) -> pd.DataFrame:
    """The partner eligibility rows of ``states`` from month ``first`` to ``last``."""
    eligibility = warehouse.query(
        "select person_token, record_id, _partner, programs_eligible, programs_enrolled, "
        "address_line1, address_line2, city, zip, language, state, month "
        f"from staging.stg_partners__eligibility where state in ({_in(states)}) and month "
        f"between date '{first}' and date '{last}'")
    eligibility["month"] = pd.to_datetime(eligibility["month"]).dt.date
    return eligibility


def load_inputs(warehouse: Warehouse, pairs: list[tuple[str, dt.date]],
                eligibility: bool = True) -> dict:
    """Everything ``select_mail_list`` reads, for the run's partitions, in a few queries.
    Without ``eligibility``, ``compute_mail_lists`` reads each month's rows when it gets to
    that month (``eligibility_for``): a year of 51 states at volume is tens of millions."""
    states = {s for s, _ in pairs}
    months = sorted({m for _, m in pairs})
    found = inputs_for(load_shared_inputs(warehouse, states), pairs)
    if eligibility:
        found["eligibility"] = load_eligibility(warehouse, states, months[0], months[-1])
    return found


def load_shared_inputs(warehouse: Warehouse, states) -> dict:
    """What the lists of any months of ``states`` read besides their eligibility rows: the
    approvals, opt-outs and vendor returns known, every earlier list, the model's scores.
    ``inputs_for`` cuts it to a set of partitions; a caller making the lists of many months
    one month at a time (the forecast) reads it once."""
    enrolled = warehouse.query(
        "select person_token, program, month from marts.fct_enrollment_outcomes "
        "where is_approved and person_token is not null")
    enrolled["month"] = pd.to_datetime(enrolled["month"]).dt.date
    optouts = warehouse.query(
        "select person_token, min(month) as month from staging.stg_nudgevendor__nudges "
        "where event_type = 'opted_out' and person_token is not null group by person_token")
    optouts["month"] = pd.to_datetime(optouts["month"]).dt.date
    # ``month``: the vendor file's month. A list reads the returns known by its month only, so
    # a list built again later is the list that was made (``compute_mail_lists``).
    returns = warehouse.query("select mail_piece_id, mailed_date, status, status_date, month "
                              "from staging.stg_mailvendor__mailreturns")
    returns["month"] = pd.to_datetime(returns["month"]).dt.date
    if warehouse.table_exists(TABLE):
        history = warehouse.query(f"select state, month, person_token, mail_piece_id, "
                                  f"address_hash from {TABLE}")
        history["month"] = pd.to_datetime(history["month"]).dt.date
    else:
        history = pd.DataFrame(columns=["state", "month", "person_token", "mail_piece_id",
                                        "address_hash"])
    scores = None
    if warehouse.table_exists(SCORES_TABLE):
        scores = warehouse.query(
            f"select state, month, person_token, score, model_version from {SCORES_TABLE} "
            f"where state in ({_in(states)})")
        scores["month"] = pd.to_datetime(scores["month"]).dt.date
    return {"enrolled": enrolled, "optouts": optouts, "returns": returns, "history": history,
            "scores": scores}


def inputs_for(shared: dict, pairs: list[tuple[str, dt.date]]) -> dict:
    """``load_shared_inputs`` for the lists of ``pairs``: the earlier lists are those of months
    before the last of them, except the pairs' own (made again); eligibility not yet read."""
    last = max(m for _, m in pairs)
    history = shared["history"]
    covered = set(pairs)
    # A boolean array, never a list: an empty list would select no columns, not no rows.
    keep = np.array([m < last and (s, m) not in covered
                     for s, m in zip(history["state"], history["month"])], dtype=bool)
    return {**shared, "eligibility": None, "history": history[keep]}


def compute_mail_lists(inputs: dict, pairs: list[tuple[str, dt.date]], config,
                       eligibility_for=None, progress=None
                       ) -> dict[tuple[str, dt.date], rules.MailListResult]:
    """The list of every partition in ``pairs``, months in order (each sees the earlier).
    ``inputs["eligibility"]`` holds the rows of every month, or is None and
    ``eligibility_for(month)`` gives each month's (all the run's states) when its turn comes.
    ``progress(state, month, done)``: called after each partition's list."""
    history = inputs["history"]
    results: dict[tuple[str, dt.date], rules.MailListResult] = {}
    by_month: dict[dt.date, list[str]] = {}
    for state, month in pairs:
        by_month.setdefault(month, []).append(state)
    optouts = inputs["optouts"]
    returns = inputs["returns"]
    # The vendor's reports by piece id, looked up per partition for its people's pieces only.
    returns_of = _ReportsOfPieces(returns) if returns is not None and len(returns) else None
    for month in sorted(by_month):
        eligibility = (inputs["eligibility"] if inputs["eligibility"] is not None
                       else eligibility_for(month))
        eligibility = eligibility[eligibility["month"] == month]
        of_state = dict(tuple(eligibility.groupby("state", sort=False)))
        enrolled = inputs["enrolled"][inputs["enrolled"]["month"] <= month]
        opted = set(optouts.loc[optouts["month"] <= month, "person_token"])
        for state in sorted(by_month[month]):
            rows = of_state.get(state, eligibility.iloc[0:0])
            scores, version = None, None
            if inputs["scores"] is not None:
                s = inputs["scores"]
                scores = s[(s["state"] == state) & (s["month"] == month)]
                version = scores["model_version"].iloc[0] if not scores.empty else None
            mine = history[history["person_token"].isin(set(rows["person_token"]))]
            reports = (returns_of.of(mine["mail_piece_id"]) if returns_of is not None
                       else returns)
            if reports is not None and "month" in reports.columns:
                # The vendor's files up to the list's month: what was known when it was made.
                reports = reports[np.array([m <= month for m in reports["month"]], dtype=bool)]
            result = rules.select_mail_list(
                state, month, rows, enrolled=enrolled, history=mine,
                returns=reports, opted_out=opted,
                do_not_contact=config.do_not_contact, budget=config.budget(state, month),
                control_share=config.control_share, history_days=config.history_days,
                scores=scores, model_version=version)
            results[(state, month)] = result
            if not result.rows.empty:
                history = pd.concat([history, result.rows[history.columns]], ignore_index=True)
            if progress is not None:
                progress(state, month, len(results))
        del eligibility, of_state
    return results


class _ReportsOfPieces:
    """The mail vendor's reports of given pieces, in their original order, without scanning
    every report each time: the piece ids sorted once, each lookup a binary search."""

    def __init__(self, returns: pd.DataFrame):
        self.returns = returns.reset_index(drop=True)
        ids = self.returns["mail_piece_id"].astype(object).where(
            self.returns["mail_piece_id"].notna(), "").to_numpy()
        self.order = np.argsort(ids, kind="stable")
        self.sorted_ids = ids[self.order]

    def of(self, pieces: pd.Series) -> pd.DataFrame:
        wanted = np.array(sorted(set(pieces.dropna().astype(str)) - {""}), dtype=object)
        starts = np.searchsorted(self.sorted_ids, wanted, side="left")
        ends = np.searchsorted(self.sorted_ids, wanted, side="right")
        positions = [self.order[start:end] for start, end in zip(starts, ends) if end > start]
        positions = np.sort(np.concatenate(positions)) if positions else np.array([], dtype=int)
        return self.returns.iloc[positions]


def check_list(frame: pd.DataFrame, budget: int) -> list[str]:
    """What is wrong with one partition's list (empty: nothing)."""
    problems = []
    if frame["person_token"].duplicated().any():
        problems.append("a person appears twice")
    if frame["mail_piece_id"].duplicated().any():
        problems.append("a mail_piece_id appears twice")
    if len(frame) > budget:
        problems.append(f"{len(frame)} pieces exceed the budget of {budget}")
    if sorted(frame["rank"]) != list(range(1, len(frame) + 1)):
        problems.append("ranks are not 1..n")
    return problems


@dg.asset(
    # Opens the warehouse: its pool, and retries of transient errors only (core/retries.py).
    retry_policy=TRANSIENT_RETRY_POLICY, pool=WAREHOUSE_POOL,
    key=KEY,
    group_name="outreach",
    deps=UPSTREAM,
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    code_version=CODE_VERSION,
    kinds={"duckdb"},
    metadata={"table": TABLE},
    check_specs=[dg.AssetCheckSpec(RULES_CHECK, asset=KEY, description=(
        "In every partition of the run: nobody twice, every mail_piece_id unique, no more "
        "pieces than the budget, ranks 1..n."))],
)
@transient_retries
def mail_list_table(context: dg.AssetExecutionContext, warehouse: Warehouse,
                    outreach: OutreachConfigResource):
    """The people we mail this month in this state: one row per mail piece.

    Who is on it: people a partner found eligible for a program they are not enrolled in (nor
    approved for), not on the do-not-contact list, never opted out of a text/call campaign,
    whose last piece did not come back undeliverable at the same address, and not mailed by us
    in the last 90 days (`mail.history_days`); one row per person however many partners list
    them; at most the state x month's pieces budget, in `rank` order.

    - `mail_piece_id`: new, stable (same state, month and person, same id); the vendor reports
      delivery against it
    - `score`, `model_version`: the response model's propensity (empty without a model)
    - `rank`: 1 = mail first; `arm`: `model` (chosen by rank) or `random_control` (a lottery
      share of the budget, `mail.control_share`, mailed whatever the score)
    - `programs_to_offer`: the programs the letter is about; `address_hash`: a fingerprint of
      the address mailed (the address itself stays in staging)

    Materialization metadata per partition: pieces, budget, candidates and every exclusion by
    reason (`excluded_<reason>`).
    """
    config = outreach.load()
    pairs = [parts.split_key(key) for key in context.partition_keys]
    inputs = load_inputs(warehouse, pairs, eligibility=False)
    states = {state for state, _ in pairs}
    results = compute_mail_lists(
        inputs, pairs, config,
        eligibility_for=lambda month: load_eligibility(warehouse, states, month, month),
        progress=lambda state, month, done: heartbeat.note(
            f"mail list {state} {month:%Y-%m} made ({done} of {len(pairs)} partitions)"))
    frames = [r.rows for r in results.values() if not r.rows.empty]
    frame = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=rules.LIST_COLUMNS))
    table = pa.Table.from_pandas(frame[rules.LIST_COLUMNS], schema=SCHEMA, preserve_index=False)
    with warehouse.batch() as batch:
        batch.replace(TABLE, table, pairs)
    problems, materializations = {}, []
    for (state, month), result in sorted(results.items()):
        if result.candidates == 0:
            context.log.warning(f"{state} {month:%Y-%m}: nobody on the eligibility files; "
                                "no mail list")
            continue
        found = check_list(result.rows, result.budget)
        if found:
            problems[f"{state} {month:%Y-%m}"] = found
        metadata = {"dagster/row_count": len(result.rows), "table": TABLE,
                    "code_version": CODE_VERSION, "budget": result.budget,
                    "candidates": result.candidates, "eligible": result.eligible,
                    "duplicate_rows": result.duplicate_rows,
                    "random_control": int((result.rows["arm"] == rules.ARM_CONTROL).sum()),
                    "config": config.source,
                    **{f"excluded_{reason}": count
                       for reason, count in result.exclusions.items()}}
        materializations.append(dg.AssetMaterialization(
            asset_key=KEY, partition=parts.partition_key(state, month), metadata=metadata))
        context.log.info(f"{state} {month:%Y-%m}: {len(result.rows)} pieces of "
                         f"{result.candidates} people; excluded {result.exclusions}")
    log_materializations(context, materializations)
    yield dg.AssetCheckResult(
        check_name=RULES_CHECK, asset_key=KEY, passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items())
        or f"{len(materializations)} list(s) keep every rule",
        metadata={"partitions": len(materializations)})
