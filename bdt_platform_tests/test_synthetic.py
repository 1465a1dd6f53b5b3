"""The synthetic generator: deterministic, subset-stable, contract-true, joinable, plausible."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bdt_platform.feeds.filenames import parse_drop_name
from bdt_platform.core.partitions import add_months
from bdt_platform.core.pii import TOKEN_PATTERN, person_token
from bdt_platform.synthetic import GenerationSummary, generate
from bdt_platform.synthetic.funnel import BENEFIT_RANGE_USD, arm_for, simulate_month
from bdt_platform.synthetic.partners import COMMUNITY_PARTNER, feed_partners, state_agency
from bdt_platform.synthetic.people import build_pool
from bdt_platform.synthetic.split import split_eligible

KEY = "test-pii-key"
PROGRAMS = {"SNAP", "MEDICAID", "LIHEAP", "WIC", "MSP", "EXTRA_HELP"}
JAN, FEB, MAR = dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)
TS_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$"
DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
MONEY_RE = r"^\d+\.\d{2}$"

COLUMNS = {
    "eligibility": ["record_id", "first_name", "last_name", "ssn", "date_of_birth",
                    "address_line1", "address_line2", "city", "state", "zip", "phone", "email",
                    "language", "household_size", "monthly_income", "programs_enrolled",
                    "programs_eligible"],
    "outcomes": ["application_id", "program", "decision", "decision_date",
                 "monthly_benefit_usd"],
    "mailreturns": ["mail_piece_id", "mailed_date", "status", "status_date"],
    "nudges": ["event_id", "campaign_id", "arm", "channel", "recipient_key", "event_type",
               "event_ts"],
}
PRIMARY_KEYS = {"clients": "client_id", "applications": "application_id", "calls": "call_id"}
# Files per state-month: one per partner of each feed (eligibility from the agency and
# communitycare, the other feeds from one partner each).
FILES_PER_STATE_MONTH = 5


def run(root: Path, states, months, **kwargs) -> GenerationSummary:
    kwargs.setdefault("scale", 0.2)
    kwargs.setdefault("pii_key", KEY)
    return generate(root / "inbox", root / "casemgmt.sqlite", states=states, months=months,
                    **kwargs)


def file_hashes(inbox: Path) -> dict[str, str]:
    return {str(p.relative_to(inbox)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(inbox.rglob("*")) if p.is_file()}


def table_rows(db: Path, where: str = "") -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as connection:
        return {table: connection.execute(f"SELECT * FROM {table} {where} ORDER BY {key}")
                .fetchall() for table, key in PRIMARY_KEYS.items()}


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def read_feed(path: Path) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(read_bytes(path)), dtype=str, keep_default_na=False)


def read_table(db: Path, table: str) -> pd.DataFrame:
    with sqlite3.connect(db) as connection:
        return pd.read_sql_query(f"SELECT * FROM {table}", connection).fillna("")


def month_bounds(month: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    return pd.Timestamp(month), pd.Timestamp(add_months(month, 1))


def in_month(values: pd.Series, month: dt.date) -> pd.Series:
    start, end = month_bounds(month)
    parsed = pd.to_datetime(values, format="%Y-%m-%d")
    return (parsed >= start) & (parsed < end)


def matches(values: pd.Series, pattern: str) -> bool:
    return bool(values.str.fullmatch(pattern).all())


# ---------------------------------------------------------------------------------------------
# A shared, moderately sized scope: 2 states x 2 months.

@pytest.fixture(scope="module")
def scope(tmp_path_factory) -> tuple[Path, GenerationSummary, list[str]]:
    root = tmp_path_factory.mktemp("synthetic")
    messages: list[str] = []
    summary = run(root, ["PA", "NM"], [JAN, FEB], scale=0.5, progress=messages.append)
    return root, summary, messages


def feeds_by_name(root: Path) -> dict[str, list[tuple[Path, str, dt.date]]]:
    found: dict[str, list] = {}
    for path in sorted((root / "inbox").rglob("*.csv*")):
        name = parse_drop_name(path.parent.name, path.name)
        found.setdefault(name.feed, []).append((path, name.state, name.month))
    return found


# ---------------------------------------------------------------------------------------------
# Determinism and subset stability

def test_same_seed_same_bytes_and_rows_different_seed_different_bytes(tmp_path):
    a = run(tmp_path / "a", ["PA", "NJ"], [JAN, FEB])
    b = run(tmp_path / "b", ["PA", "NJ"], [JAN, FEB])
    c = run(tmp_path / "c", ["PA", "NJ"], [JAN, FEB], seed=7)
    hashes_a = file_hashes(tmp_path / "a" / "inbox")
    assert len(hashes_a) == len(a.files) == 2 * 2 * FILES_PER_STATE_MONTH
    assert {"paagency/paagency_PA_202401_eligibility.csv",
            "communitycare/communitycare_PA_202401_eligibility.csv"} <= hashes_a.keys()
    assert hashes_a == file_hashes(tmp_path / "b" / "inbox")
    assert table_rows(tmp_path / "a" / "casemgmt.sqlite") == table_rows(
        tmp_path / "b" / "casemgmt.sqlite")
    assert a.rows == b.rows
    hashes_c = file_hashes(tmp_path / "c" / "inbox")
    assert hashes_c.keys() == hashes_a.keys()
    assert all(hashes_c[name] != hashes_a[name] for name in hashes_a)
    assert c.seed == 7 and a.seed == 42


def test_output_does_not_depend_on_the_process_hash_seed(tmp_path):
    """Seeds come from CRC-32 labels, never from salted ``hash()`` or set iteration order."""
    script = ("import datetime as dt, sys; from pathlib import Path; "
              "from bdt_platform.synthetic import generate; r = Path(sys.argv[1]); "
              "generate(r / 'inbox', r / 'db.sqlite', states=['PA', 'NM'], "
              f"months=[dt.date(2024, 1, 1)], scale=0.2, pii_key={KEY!r})")
    for hash_seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / hash_seed)], check=True,
                       env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"})
    assert file_hashes(tmp_path / "1" / "inbox") == file_hashes(tmp_path / "2" / "inbox")
    assert table_rows(tmp_path / "1" / "db.sqlite") == table_rows(tmp_path / "2" / "db.sqlite")


def test_a_state_alone_equals_that_state_among_others(tmp_path):
    run(tmp_path / "alone", ["PA"], [JAN, FEB])
    run(tmp_path / "both", ["NJ", "PA"], [JAN, FEB])
    alone = file_hashes(tmp_path / "alone" / "inbox")
    both = file_hashes(tmp_path / "both" / "inbox")
    assert alone and alone == {name: h for name, h in both.items() if "_PA_" in name}
    where = "WHERE state = 'PA'"
    assert table_rows(tmp_path / "alone" / "casemgmt.sqlite", where) == table_rows(
        tmp_path / "both" / "casemgmt.sqlite", where)


def test_months_generated_separately_equal_months_generated_together(tmp_path):
    run(tmp_path / "together", ["PA"], [JAN, FEB, MAR])
    for month in (MAR, JAN, FEB):  # out of order on purpose
        run(tmp_path / "separately", ["PA"], [month])
    assert file_hashes(tmp_path / "together" / "inbox") == file_hashes(
        tmp_path / "separately" / "inbox")
    assert table_rows(tmp_path / "together" / "casemgmt.sqlite") == table_rows(
        tmp_path / "separately" / "casemgmt.sqlite")


def test_regenerating_a_scope_leaves_the_database_as_one_generation_would(tmp_path):
    run(tmp_path / "once", ["PA"], [JAN, FEB])
    expected = table_rows(tmp_path / "once" / "casemgmt.sqlite")
    run(tmp_path / "again", ["PA"], [JAN, FEB], seed=99)  # different people first ...
    run(tmp_path / "again", ["PA"], [JAN, FEB])           # ... then the same scope twice
    run(tmp_path / "again", ["PA"], [JAN, FEB])
    assert table_rows(tmp_path / "again" / "casemgmt.sqlite") == expected


def test_gzip_is_deterministic_and_files_appear_complete(tmp_path):
    summary = run(tmp_path, ["DC"], [JAN], gzip_feeds=("nudges", "outcomes"))
    names = sorted(p.name for p in summary.files)
    assert names == ["communitycare_DC_202401_eligibility.csv",
                     "dcagency_DC_202401_eligibility.csv",
                     "dcagency_DC_202401_outcomes.csv.gz",
                     "mailvendor_DC_202401_mailreturns.csv",
                     "nudgevendor_DC_202401_nudges.csv.gz"]
    assert sorted(str(p.relative_to(tmp_path / "inbox").parent) for p in summary.files) == [
        "communitycare", "dcagency", "dcagency", "mailvendor", "nudgevendor"]
    for path in summary.files:
        if path.name.endswith(".gz"):
            header = path.read_bytes()[:10]
            assert header[:2] == b"\x1f\x8b"
            assert header[4:8] == b"\0\0\0\0"  # mtime 0
            assert not header[3] & 0x08        # no file name stored
    # Nothing half-written or temporary is left behind.
    leftovers = [p for p in (tmp_path / "inbox").rglob("*") if p.is_file()]
    assert sorted(leftovers) == sorted(summary.files)
    assert not (tmp_path / "inbox" / ".tmp").exists()


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown state"):
        run(tmp_path, ["XX"], [JAN])
    with pytest.raises(ValueError, match="first-of-month"):
        run(tmp_path, ["PA"], [dt.date(2024, 1, 15)])
    with pytest.raises(ValueError, match="pii_key"):
        run(tmp_path, ["PA"], [JAN], pii_key="")


# ---------------------------------------------------------------------------------------------
# Contract-true files (feeds.md)

def test_summary_and_progress(scope):
    root, summary, messages = scope
    assert summary.states == ["PA", "NM"] and summary.months == [JAN, FEB]
    assert summary.scale == 0.5 and len(summary.files) == 2 * 2 * FILES_PER_STATE_MONTH
    assert all(path.exists() for path in summary.files)
    assert len(messages) == 2 and messages[0].startswith(
        f"generated PA: {2 * FILES_PER_STATE_MONTH} files, ")
    found = feeds_by_name(root)
    for feed in COLUMNS:
        # Data rows summed over the feed's files: for eligibility both partners' files, so a
        # person both list counts twice.
        assert summary.rows[feed] == sum(len(read_feed(p)) for p, _, _ in found[feed])
    distinct = sum(frame["token"].nunique() for _, frame in
                   eligibility_people(root).groupby(["file_state", "file_month"]))
    assert summary.rows["eligibility"] > distinct
    for table in ("applications", "calls", "clients"):
        assert summary.rows[table] == len(read_table(root / "casemgmt.sqlite", table))


def test_files_are_utf8_lf_with_the_contract_columns(scope):
    root, _, _ = scope
    found = feeds_by_name(root)
    assert sorted(found) == sorted(COLUMNS)
    for feed, files in found.items():
        assert len(files) == 2 * 2 * len(feed_partners(feed, "PA"))
        assert {path.parent.name for path, _, _ in files} == {
            partner for state in ("PA", "NM") for partner in feed_partners(feed, state)}
        for path, _, _ in files:
            data = read_bytes(path)
            assert not data.startswith(b"\xef\xbb\xbf") and b"\r" not in data
            text = data.decode("utf-8")
            assert text.endswith("\n")
            assert text.split("\n", 1)[0] == ",".join(COLUMNS[feed])
            assert list(read_feed(path).columns) == COLUMNS[feed]


def test_eligibility_follows_the_contract(scope):
    root, _, _ = scope
    for path, state, month in feeds_by_name(root)["eligibility"]:
        df = read_feed(path)
        # ~300 x scale 0.5 eligible people: ~65% of them in the agency's file, ~55% in
        # communitycare's.
        assert 55 <= len(df) <= 130, path.name
        assert df["record_id"].is_unique
        prefix = {state_agency(state): "AG", COMMUNITY_PARTNER: "CC"}[path.parent.name]
        assert matches(df["record_id"], rf"{prefix}-{state}-{month:%Y%m}-\d{{6}}")
        for column in ("first_name", "last_name", "address_line1", "city"):
            assert (df[column].str.strip() != "").all(), column
        assert matches(df["ssn"], r"(\d{9})?") and (df["ssn"] != "000000000").all()
        assert 0.02 < (df["ssn"] == "").mean() < 0.25
        ssns = df.loc[df["ssn"] != "", "ssn"]
        assert ssns.is_unique
        assert matches(df["date_of_birth"], DATE_RE)
        dob = pd.to_datetime(df["date_of_birth"], format="%Y-%m-%d")
        assert dob.min() >= pd.Timestamp("1930-01-01") and dob.max() < pd.Timestamp("2006-01-01")
        assert (df["state"] == state).all()
        assert matches(df["zip"], r"\d{5}(-\d{4})?")
        assert matches(df["phone"], r"(\d{10})?")
        assert 0.05 < (df["phone"] == "").mean() < 0.30
        assert matches(df["email"], r"([a-z0-9._]+@[a-z0-9.]+\.[a-z]+)?")
        assert (df["email"] == "").any() and (df["email"] != "").any()
        assert set(df["language"]) <= {"en", "es", "zh", "vi"} and "es" in set(df["language"])
        sizes = df["household_size"].astype(int)
        assert matches(df["household_size"], r"\d{1,2}") and sizes.between(1, 8).all()
        assert matches(df["monthly_income"], MONEY_RE)
        assert df["monthly_income"].astype(float).median() < 4000
        for enrolled, eligible in zip(df["programs_enrolled"], df["programs_eligible"]):
            codes = eligible.split(";")
            assert 1 <= len(codes) <= 3 and set(codes) <= PROGRAMS and len(set(codes)) == len(codes)
            taken = enrolled.split(";") if enrolled else []
            assert set(taken) <= PROGRAMS and not set(taken) & set(codes)
        assert (df["programs_enrolled"] == "").mean() > 0.4


def test_outcomes_follow_the_contract(scope):
    root, _, _ = scope
    for path, state, month in feeds_by_name(root)["outcomes"]:
        df = read_feed(path)
        assert len(df) > 0 and df["application_id"].is_unique
        assert matches(df["application_id"], rf"APP-(X-)?{state}-{month:%Y%m}-\d+")
        assert set(df["program"]) <= PROGRAMS
        assert set(df["decision"]) <= {"approved", "denied", "pending"}
        assert matches(df["decision_date"], DATE_RE) and in_month(df["decision_date"], month).all()
        assert matches(df["monthly_benefit_usd"], MONEY_RE)
        benefit = df["monthly_benefit_usd"].astype(float)
        approved = df["decision"] == "approved"
        assert (benefit[~approved] == 0).all() and (benefit[approved] > 0).all()
        for program, amount in zip(df.loc[approved, "program"], benefit[approved]):
            low, high = BENEFIT_RANGE_USD[program]
            assert low <= amount <= high, (program, amount)


def test_mailreturns_follow_the_contract(scope):
    root, _, _ = scope
    for path, state, month in feeds_by_name(root)["mailreturns"]:
        df = read_feed(path)
        assert len(df) > 0 and df["mail_piece_id"].is_unique
        assert matches(df["mail_piece_id"], rf"MP-{state}-{month:%Y%m}-\d{{6}}")
        assert matches(df["mailed_date"], DATE_RE) and in_month(df["mailed_date"], month).all()
        assert set(df["status"]) <= {"delivered", "returned", "undeliverable", "forwarded"}
        assert 0.75 < (df["status"] == "delivered").mean() < 0.97
        assert matches(df["status_date"], DATE_RE)
        assert (pd.to_datetime(df["status_date"]) >= pd.to_datetime(df["mailed_date"])).all()


def test_nudges_follow_the_contract(scope):
    root, _, _ = scope
    for path, state, month in feeds_by_name(root)["nudges"]:
        assert path.name.endswith(".csv.gz")
        df = read_feed(path)
        assert len(df) > 0 and df["event_id"].is_unique
        assert matches(df["campaign_id"], rf"{state}-{month:%Y%m}-[a-z-]+")
        assert 1 <= df["campaign_id"].nunique() <= 2
        assert set(df["arm"]) == {"treatment", "control"}
        assert set(df["channel"]) <= {"sms", "call"}
        assert matches(df["recipient_key"], TOKEN_PATTERN.strip("^$"))
        assert set(df["event_type"]) <= {"sent", "delivered", "replied", "opted_out",
                                         "call_completed", "failed"}
        assert matches(df["event_ts"], TS_RE)
        ts = pd.to_datetime(df["event_ts"], utc=True)
        start, end = (t.tz_localize("UTC") for t in month_bounds(month))
        assert ((ts >= start) & (ts < end)).all()
        # Everyone was sent something; one arm, channel and campaign per recipient.
        per_person = df.groupby("recipient_key")
        assert (per_person["event_type"].apply(lambda e: (e == "sent").sum()) == 1).all()
        assert (per_person[["arm", "channel", "campaign_id"]].nunique() == 1).all().all()
        firsts = per_person.first()
        assert all(arm_for(token, campaign) == arm for token, campaign, arm in
                   zip(firsts.index, firsts["campaign_id"], firsts["arm"]))
        sent = df[df["event_type"] == "sent"].set_index("recipient_key")["event_ts"]
        later = df[df["event_type"] != "sent"]
        assert (pd.to_datetime(later["event_ts"]).values
                >= pd.to_datetime(sent.loc[later["recipient_key"]]).values).all()


def test_case_management_tables_follow_the_contract(scope):
    root, _, _ = scope
    db = root / "casemgmt.sqlite"
    clients, apps, calls = (read_table(db, t) for t in ("clients", "applications", "calls"))
    assert clients["client_id"].is_unique and apps["application_id"].is_unique
    assert calls["call_id"].is_unique
    assert matches(clients["ssn"], r"(\d{9})?") and matches(clients["zip"], r"\d{5}(-\d{4})?")
    for frame, columns in ((clients, ["created_at", "updated_at"]),
                           (apps, ["submitted_at", "updated_at"]),
                           (calls, ["started_at", "updated_at"])):
        for column in columns:
            assert matches(frame[column], TS_RE), column
        assert set(frame["state"]) == {"PA", "NM"}
    assert set(apps["channel"]) <= {"phone", "web", "mail"}
    assert set(apps["program"]) <= PROGRAMS
    assert set(calls["outcome"]) <= {"completed", "voicemail", "no_answer", "callback_requested"}
    assert (calls["duration_s"] >= 0).all()
    # Ids name the state and month of the row; rows fall within that month.
    for frame, id_column, ts_column in ((apps, "application_id", "submitted_at"),
                                        (calls, "call_id", "started_at")):
        parts = frame[id_column].str.extract(r"^[A-Z]+-(?P<state>[A-Z]{2})-(?P<yyyymm>\d{6})-")
        assert (parts["state"] == frame["state"]).all()
        assert (parts["yyyymm"] == frame[ts_column].str[:7].str.replace("-", "")).all()
    # created_at is the client's first call; applications come on/after a completed call.
    first_call = calls.groupby("client_id")["started_at"].min()
    assert (clients.set_index("client_id")["created_at"] == first_call.loc[
        clients["client_id"]].values).all()
    completed = calls[calls["outcome"] == "completed"].groupby("client_id")["started_at"].min()
    assert (apps["submitted_at"].values >= completed.loc[apps["client_id"]].values).all()


def test_ssns_appear_only_in_eligibility_and_clients(scope):
    root, _, _ = scope
    found = feeds_by_name(root)
    ssns = set()
    for path, _, _ in found["eligibility"]:
        ssns |= set(read_feed(path)["ssn"]) - {""}
    assert ssns
    pattern = re.compile(r"(?<!\d)\d{9}(?!\d)")
    for feed in ("outcomes", "mailreturns", "nudges"):
        for path, _, _ in found[feed]:
            assert not set(pattern.findall(read_bytes(path).decode())) & ssns, path.name
    with sqlite3.connect(root / "casemgmt.sqlite") as connection:
        for table in ("applications", "calls"):
            text = repr(connection.execute(f"SELECT * FROM {table}").fetchall())
            assert not set(pattern.findall(text)) & ssns, table


# ---------------------------------------------------------------------------------------------
# Joins and the funnel

def eligibility_people(root: Path) -> pd.DataFrame:
    frames = [read_feed(p).assign(file_state=s, file_month=m, partner=p.parent.name)
              for p, s, m in feeds_by_name(root)["eligibility"]]
    df = pd.concat(frames, ignore_index=True)
    df["token"] = [person_token(KEY, *row) for row in
                   zip(df["ssn"], df["first_name"], df["last_name"], df["date_of_birth"],
                       df["zip"])]
    return df


def test_feeds_and_case_management_join_on_people(scope):
    root, _, _ = scope
    people = eligibility_people(root)
    tokens = set(people["token"])
    # One person per token (no two different people collide), the same person every month.
    person_columns = [c for c in COLUMNS["eligibility"]
                      if c not in ("record_id", "programs_enrolled", "programs_eligible",
                                   "monthly_income", "household_size")]
    assert (people.groupby("token")[person_columns].nunique() == 1).all().all()
    recurring = people.groupby(["file_state", "token"]).size()
    assert (recurring > 1).any()

    found = feeds_by_name(root)
    for path, _, _ in found["nudges"]:
        assert set(read_feed(path)["recipient_key"]) <= tokens

    db = root / "casemgmt.sqlite"
    clients, apps = read_table(db, "clients"), read_table(db, "applications")
    calls = read_table(db, "calls")
    outcome_ids = pd.concat([read_feed(p)["application_id"] for p, _, _ in found["outcomes"]])
    matched = outcome_ids.isin(set(apps["application_id"]))
    assert matched.mean() >= 0.95
    assert outcome_ids[~matched].str.startswith("APP-X").all()
    assert set(apps["application_id"]) <= set(outcome_ids)
    assert set(apps["client_id"]) <= set(clients["client_id"])
    assert set(calls["client_id"]) <= set(clients["client_id"])
    # A client is their eligibility row: same person fields, so the same token.
    client_tokens = [person_token(KEY, *row) for row in
                     zip(clients["ssn"], clients["first_name"], clients["last_name"],
                         clients["date_of_birth"], clients["zip"])]
    assert set(client_tokens) <= tokens
    by_token = people.drop_duplicates("token").set_index("token")
    shared = [c for c in person_columns if c in clients.columns]
    assert (clients[shared].values == by_token.loc[client_tokens, shared].values).all()


def test_funnel_is_plausible(scope):
    root, summary, _ = scope
    rows = dict(summary.rows)
    # The funnel starts from the distinct eligible people of each state-month (the union of the
    # agency's and communitycare's files), not from the rows of both files.
    people = eligibility_people(root)
    rows["eligibility"] = int(people.groupby(["file_state", "file_month"])["token"]
                              .nunique().sum())
    assert 1.1 < summary.rows["eligibility"] / rows["eligibility"] < 1.3  # ~20% in both
    with sqlite3.connect(root / "casemgmt.sqlite") as connection:
        approvals = sum((read_feed(p)["decision"] == "approved").sum()
                        for p, _, _ in feeds_by_name(root)["outcomes"])
        callers = connection.execute("SELECT COUNT(DISTINCT client_id) FROM calls").fetchone()[0]
    assert rows["eligibility"] > rows["mailreturns"] > rows["calls"] > rows["applications"]
    assert rows["applications"] > approvals > 0
    assert 0.78 < rows["mailreturns"] / rows["eligibility"] < 0.92
    assert 0.07 < callers / rows["mailreturns"] < 0.18
    assert 0.4 < approvals / rows["outcomes"] < 0.8


def test_files_and_tables_pass_the_platforms_own_contracts(scope):
    """The pandera models the loader enforces accept everything the generator writes."""
    specs = pytest.importorskip("bdt_platform.feeds.specs")
    root, _, _ = scope
    for feed, files in feeds_by_name(root).items():
        for path, state, month in files:
            frame = read_feed(path).assign(file_state=state, file_month=month.isoformat())
            specs.FILE_FEED_SPECS[feed].contract.validate(frame, lazy=True)
    month_of = {"clients": "created_at", "applications": "submitted_at", "calls": "started_at"}
    for table, spec in specs.CASEMGMT_SPECS.items():
        frame = read_table(root / "casemgmt.sqlite", table).astype(str)
        frame = frame.assign(file_state=frame["state"],
                             file_month=frame[month_of[table]].str[:7] + "-01")
        spec.contract.validate(frame, lazy=True)


# ---------------------------------------------------------------------------------------------
# Eligibility from two partners: the state agency and communitycare share the month's people

def eligibility_pair(root: Path, state: str, month: dt.date) -> dict[str, pd.DataFrame]:
    """The state-month's eligibility files by partner, each with its rows' person tokens."""
    frames = {}
    for partner in feed_partners("eligibility", state):
        path = root / "inbox" / partner / f"{partner}_{state}_{month:%Y%m}_eligibility.csv"
        assert path.is_file(), path
        df = read_feed(path)
        df["token"] = [person_token(KEY, *row) for row in
                       zip(df["ssn"], df["first_name"], df["last_name"], df["date_of_birth"],
                           df["zip"])]
        frames[partner] = df
    return frames


@pytest.mark.parametrize("state", ["PA", "NM"])
@pytest.mark.parametrize("month", [JAN, FEB])
def test_eligibility_is_split_between_the_state_agency_and_communitycare(scope, state, month):
    root, _, _ = scope
    assert feed_partners("eligibility", state) == (state_agency(state), COMMUNITY_PARTNER)
    frames = eligibility_pair(root, state, month)
    agency, community = (frames[p] for p in feed_partners("eligibility", state))
    assert len(agency) > 0 and len(community) > 0
    for df in (agency, community):
        assert df["record_id"].is_unique and df["token"].is_unique
    a, c = set(agency["token"]), set(community["token"])
    # Some overlap, but neither file holds everyone.
    assert a & c and a - c and c - a
    # The union is exactly the population the simulation chose for the month.
    pool = build_pool(state, seed=42, scale=0.5, pii_key=KEY)
    activity = simulate_month(pool, month, seed=42, scale=0.5)
    expected = set(pool.token[activity.eligible])
    assert len(expected) == len(activity.eligible)
    assert a | c == expected
    # Shares near 45% agency only, 35% communitycare only, 20% both.
    n = len(expected)
    assert 0.30 < len(a - c) / n < 0.60
    assert 0.20 < len(c - a) / n < 0.50
    assert 0.08 < len(a & c) / n < 0.32
    # A person in both files is the same person: every field but record_id is identical
    # (name, SSN, date of birth, address, zip, contact, household, income, programs).
    both = agency.merge(community, on="token", suffixes=("_a", "_c"))
    assert len(both) == len(a & c)
    for column in (c for c in COLUMNS["eligibility"] if c != "record_id"):
        assert (both[f"{column}_a"] == both[f"{column}_c"]).all(), column
    # Each file's rows are its people in pool order, as the single file used to be.
    order = {token: i for i, token in enumerate(pool.token[activity.eligible])}
    for df in (agency, community):
        positions = [order[t] for t in df["token"]]
        assert positions == sorted(positions)


def test_a_person_is_known_to_the_same_partners_every_month(scope):
    root, _, _ = scope
    people = eligibility_people(root)
    partners = people.groupby(["file_state", "file_month", "token"])["partner"].agg(
        lambda p: tuple(sorted(p)))
    per_person = partners.groupby(level=["file_state", "token"]).nunique()
    assert (per_person == 1).all()
    assert partners.groupby(level="token").size().max() > 1  # someone recurs


def test_eligibility_split_is_deterministic_and_keeps_every_file_populated(tmp_path):
    """Twice the same bytes; a month of two people still gives each partner one; a month of one
    person writes the other partner a header-only file, which the contract accepts."""
    first = run(tmp_path / "a", ["PA"], [JAN, FEB, MAR], scale=0.007)
    run(tmp_path / "b", ["PA"], [JAN, FEB, MAR], scale=0.007)
    hashes = file_hashes(tmp_path / "a" / "inbox")
    assert hashes == file_hashes(tmp_path / "b" / "inbox")
    assert len(first.files) == 3 * FILES_PER_STATE_MONTH
    pool = build_pool("PA", seed=42, scale=0.007, pii_key=KEY)
    for month in (JAN, FEB, MAR):
        activity = simulate_month(pool, month, seed=42, scale=0.007)
        assert len(activity.eligible) >= 2
        frames = eligibility_pair(tmp_path / "a", "PA", month)
        assert all(len(df) >= 1 for df in frames.values()), month
        union = set().union(*(set(df["token"]) for df in frames.values()))
        assert union == set(pool.token[activity.eligible])

    # One eligible person: in the file(s) the hash picks; any other is a header-only file.
    specs = pytest.importorskip("bdt_platform.feeds.specs")
    run(tmp_path / "one", ["PA"], [JAN], scale=0.003)
    pool = build_pool("PA", seed=42, scale=0.003, pii_key=KEY)
    activity = simulate_month(pool, JAN, seed=42, scale=0.003)
    assert len(activity.eligible) == 1
    frames = eligibility_pair(tmp_path / "one", "PA", JAN)
    assert sorted(len(df) for df in frames.values())[-1] == 1
    assert set().union(*(set(df["token"]) for df in frames.values())) == set(
        pool.token[activity.eligible])
    for df in frames.values():
        frame = df.drop(columns="token").assign(file_state="PA", file_month=JAN.isoformat())
        specs.FILE_FEED_SPECS["eligibility"].contract.validate(frame, lazy=True)


def test_split_gives_an_empty_side_the_first_person_of_the_other():
    pool = build_pool("PA", seed=42, scale=0.2, pii_key=KEY)
    agency, community = feed_partners("eligibility", "PA")
    shares = split_eligible(pool, list(range(len(pool))), seed=42)
    assert list(shares) == [agency, community]
    only_agency = sorted(set(shares[agency]) - set(shares[community]))
    only_community = sorted(set(shares[community]) - set(shares[agency]))
    assert len(only_agency) >= 3 and len(only_community) >= 3
    # The hash alone is stable: the same people in any subset, with any other seed different.
    subset = only_agency[:3] + only_community[:3]
    sub = split_eligible(pool, sorted(subset), seed=42)
    assert sorted(sub[agency]) == sorted(only_agency[:3])
    assert sorted(sub[community]) == sorted(only_community[:3])
    assert split_eligible(pool, list(range(len(pool))), seed=7)[agency].tolist() != shares[
        agency].tolist()
    # Everyone agency-only: communitycare still gets the first of them, as a shared person.
    sub = split_eligible(pool, only_agency[:3], seed=42)
    assert sub[agency].tolist() == only_agency[:3]
    assert sub[community].tolist() == only_agency[:1]
    sub = split_eligible(pool, only_community[1:4], seed=42)
    assert sub[community].tolist() == only_community[1:4]
    assert sub[agency].tolist() == only_community[1:2]
    # One person stays where the hash puts them; the other side is empty.
    sub = split_eligible(pool, only_agency[:1], seed=42)
    assert sub[agency].tolist() == only_agency[:1] and sub[community].tolist() == []
