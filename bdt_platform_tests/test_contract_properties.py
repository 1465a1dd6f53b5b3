"""Property-based: random contract-true files always load; one random broken rule is always caught.

For each file feed, hypothesis draws a state, a month and rows that keep every rule of feeds.md
(free text drawn from all of Unicode plus commas, quotes, newlines and SQL fragments), writes them
as a partner would (LF or CRLF, with or without BOM, any column order, plain or gzip) and pushes
the bytes through decode -> read_text_frame -> validate -> to_table. The load must succeed with
every text value stored verbatim. Then it breaks exactly one rule, chosen at random, in one
random row: the rejection must name exactly that rule, on its column.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bdt_platform.feeds import (contract_rules, contracts, csv_reader, decoding, rejections,
                                typed_table, validation)
from bdt_platform.feeds.specs import FILE_FEED_SPECS
from bdt_platform.core.partitions import STATES, add_months

from . import bad_files as bf

KEY = "property-key"
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.data_too_large,
                                                    HealthCheck.filter_too_much])

# --- contract-true values --------------------------------------------------------------------

CHARS = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs"))
ODD = st.sampled_from([",", '"', "'", ";", "\n", "''); DROP TABLE raw.eligibility;--", "张伟",
                       "Ñúñez", "محمد", "🙂", "  ", "NULL", "\\N", "=1+1", "\u200b", "\ufeff"])
FREE_TEXT = st.lists(st.one_of(st.text(CHARS, max_size=5), ODD), max_size=4).map("".join)
NON_BLANK = FREE_TEXT.filter(lambda s: s.strip() != "")
SSN_INSIDE = re.compile(contract_rules.SSN_INSIDE_PATTERN)
MONTHS = st.builds(lambda y, m: dt.date(y, m, 1), st.integers(2023, 2026), st.integers(1, 12))
DECIMAL = st.from_regex(r"[0-9]{1,7}(\.[0-9]{1,3})?", fullmatch=True)
POSITIVE = DECIMAL.filter(lambda s: float(s) > 0)
HEX32 = st.text("0123456789abcdef", min_size=32, max_size=32)
PROGRAM_LISTS = st.lists(st.sampled_from(contracts.PROGRAMS), unique=True).map(";".join)


def dates(first: dt.date, last: dt.date):
    return st.dates(first, last).map(dt.date.isoformat)


def ids(prefix: str, n: int):
    """n distinct, non-blank identifiers with odd text in them."""
    return NON_BLANK.map(lambda text: [f"{text}-{prefix}{i}" for i in range(n)])


@st.composite
def timestamp_in(draw, month: dt.date) -> str:
    day = draw(st.integers(1, bf.last_day(month).day))
    local = dt.datetime(month.year, month.month, day, draw(st.integers(0, 23)),
                        draw(st.integers(0, 59)), draw(st.integers(0, 59)))
    offset = draw(st.integers(-12 * 4, 14 * 4)) * 15
    sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
    zone = draw(st.sampled_from([f"{sign}{minutes // 60:02d}:{minutes % 60:02d}",
                                 f"{sign}{minutes // 60:02d}{minutes % 60:02d}"]
                                + (["Z"] if offset == 0 else [])))
    body = local.isoformat(sep=draw(st.sampled_from(["T", " "])))
    style = draw(st.sampled_from(["seconds", "minutes", "micro"]))
    if style == "minutes":
        body = body[:-3]
    elif style == "micro":
        body += f".{draw(st.integers(0, 999999)):06d}"
    return body + zone


@st.composite
def eligibility_rows(draw, state: str, month: dt.date, n: int) -> bf.Rows:
    record_ids = draw(ids("R", n))
    rows = []
    for record_id in record_ids:
        rows.append({
            "record_id": record_id,
            "first_name": draw(NON_BLANK), "last_name": draw(NON_BLANK),
            "ssn": draw(st.one_of(st.just(""), st.from_regex(r"[0-9]{9}", fullmatch=True)
                                  .filter(lambda s: s != "000000000"))),
            "date_of_birth": draw(dates(dt.date(1900, 1, 1), bf.last_day(month))),
            "address_line1": draw(NON_BLANK), "address_line2": draw(FREE_TEXT),
            "city": draw(NON_BLANK), "state": state,
            "zip": draw(st.from_regex(r"[0-9]{5}(-[0-9]{4})?", fullmatch=True)),
            "phone": draw(st.one_of(st.just(""), st.from_regex(r"[0-9]{10}", fullmatch=True))),
            "email": draw(FREE_TEXT),
            "language": draw(st.sampled_from(sorted(contracts.ISO_639_1))),
            "household_size": str(draw(st.integers(1, 20))),
            "monthly_income": draw(DECIMAL),
            "programs_enrolled": draw(PROGRAM_LISTS),
            "programs_eligible": draw(PROGRAM_LISTS.filter(bool)),
        })
    return rows


@st.composite
def outcomes_rows(draw, state: str, month: dt.date, n: int) -> bf.Rows:
    rows = []
    for application_id in draw(ids("A", n)):  # need not be unique, but may as well be odd
        decision = draw(st.sampled_from(contracts.DECISIONS))
        benefit = draw(DECIMAL) if decision == "approved" else draw(
            st.sampled_from(["0", "0.00", "0.0", "000"]))
        rows.append({"application_id": application_id,
                     "program": draw(st.sampled_from(contracts.PROGRAMS)),
                     "decision": decision,
                     "decision_date": draw(dates(dt.date(1990, 1, 1), bf.last_day(month))),
                     "monthly_benefit_usd": benefit})
    return rows


@st.composite
def mailreturns_rows(draw, state: str, month: dt.date, n: int) -> bf.Rows:
    rows = []
    for piece in draw(ids("MP", n)):
        mailed = draw(st.dates(dt.date(2015, 1, 1), dt.date(2030, 12, 31)))
        status = mailed + dt.timedelta(days=draw(st.integers(0, 400)))
        rows.append({"mail_piece_id": piece, "mailed_date": mailed.isoformat(),
                     "status": draw(st.sampled_from(contracts.MAIL_STATUSES)),
                     "status_date": status.isoformat()})
    return rows


@st.composite
def nudges_rows(draw, state: str, month: dt.date, n: int) -> bf.Rows:
    rows = []
    for event_id in draw(ids("E", n)):
        rows.append({"event_id": event_id,
                     "campaign_id": draw(NON_BLANK.filter(lambda s: not SSN_INSIDE.search(s))),
                     "arm": draw(st.sampled_from(contracts.ARMS)),
                     "channel": draw(st.sampled_from(contracts.CHANNELS)),
                     "recipient_key": "tok_" + draw(HEX32),
                     "event_type": draw(st.sampled_from(contracts.EVENT_TYPES)),
                     "event_ts": draw(timestamp_in(month))})
    return rows


ROWS = {"eligibility": eligibility_rows, "outcomes": outcomes_rows,
        "mailreturns": mailreturns_rows, "nudges": nudges_rows}


def draw_file(data, feed: str, min_rows: int = 0):
    state = data.draw(st.sampled_from(STATES), label="state")
    month = data.draw(MONTHS, label="month")
    n = data.draw(st.integers(min_rows, 6), label="rows")
    rows = data.draw(ROWS[feed](state, month, n), label="file rows")
    return state, month, rows


def write(data, feed: str, state: str, month: dt.date, rows: bf.Rows) -> tuple[str, bytes]:
    """The rows as a partner might write them: any column order, LF/CRLF, BOM, gzip."""
    names = data.draw(st.permutations(bf.columns(feed)), label="column order")
    text = bf.csv_text(rows, list(names), data.draw(st.sampled_from(["\n", "\r\n"])))
    raw = ("\ufeff" if data.draw(st.booleans(), label="bom") else "") + text
    encoded = raw.encode("utf-8")
    if data.draw(st.booleans(), label="gzip"):
        return bf.filename(feed, state, month, gz=True), bf.gzip_bytes(encoded)
    return bf.filename(feed, state, month), encoded


def run(feed: str, name: str, payload: bytes, state: str, month: dt.date):
    spec = FILE_FEED_SPECS[feed]
    frame = csv_reader.read_text_frame(decoding.decode(payload, name), spec)
    validation.validate(frame, spec, state, month)
    return typed_table.to_table(frame, spec, state=state, month=month, source_file=name,
                                pii_key=KEY)


@pytest.mark.parametrize("feed", bf.FEEDS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_contract_true_files_always_load_verbatim(feed, data):
    state, month, rows = draw_file(data, feed)
    name, payload = write(data, feed, state, month, rows)
    table = run(feed, name, payload, state, month)
    assert table.num_rows == len(rows)
    spec = FILE_FEED_SPECS[feed]
    loaded = table.to_pylist()
    for row, out in zip(rows, loaded):
        for column, value in row.items():
            if column == "ssn":
                continue
            stored = out[column]
            if value == "" and column in spec.optional:
                assert stored is None
            elif isinstance(stored, str):
                assert stored == value, column
            elif isinstance(stored, dt.datetime):  # the same instant, stored in UTC
                assert stored == dt.datetime.fromisoformat(value), column
            elif isinstance(stored, dt.date):
                assert stored == dt.date.fromisoformat(value), column
            else:
                assert stored == pytest.approx(float(value)), column
        assert out["state"] == state and out["month"] == month


# --- single-rule violations ------------------------------------------------------------------
# Each takes (data, rows, i, state, month) and breaks its rule in row i, and only that rule.

BLANK = st.sampled_from(["", " ", "\t", "   \u00a0", "\u3000"])


def _set(column: str, values):
    def breaker(data, rows, i, state, month):
        rows[i][column] = data.draw(values if isinstance(values, st.SearchStrategy)
                                    else values(state, month), label=f"bad {column}")
    return breaker


def _duplicate(column: str):
    def breaker(data, rows, i, state, month):
        j = data.draw(st.sampled_from([k for k in range(len(rows)) if k != i]), label="other row")
        rows[i][column] = rows[j][column]
    return breaker


def _other_code_lists(column: str):
    unknown = st.sampled_from(["FOOD", "snap", "TANF", "SNAP ", " WIC", "Medicaid", "EXTRA HELP"])

    def known_codes(data, rows, i, state, month):
        codes = data.draw(st.lists(st.sampled_from(contracts.PROGRAMS), unique=True), label="codes")
        codes.insert(data.draw(st.integers(0, len(codes))), data.draw(unknown))
        rows[i][column] = ";".join(codes)

    def no_duplicates(data, rows, i, state, month):
        codes = data.draw(st.lists(st.sampled_from(contracts.PROGRAMS), unique=True, min_size=1),
                          label="codes")
        codes.insert(data.draw(st.integers(0, len(codes))), data.draw(st.sampled_from(codes)))
        rows[i][column] = ";".join(codes)
    return {f"{column}_known_codes": known_codes, f"{column}_no_duplicates": no_duplicates}


BAD_DATES = st.one_of(
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(1950, 2030),
              st.sampled_from([2, 4, 6, 9, 11]), st.just(31)),
    st.sampled_from(["", "2024-13-01", "2024-00-10", "07/04/1961", "1990-1-1", "19900101",
                     "2024-03-01T00:00:00", "yesterday", "２０２４-０１-０１"]))
NOT_DECIMAL = st.sampled_from(["", "$100", "1,000.00", "abc", "1e3", "1.", ".5", "+3", "NaN",
                               "１２"])


def _outside_month(state: str, month: dt.date):
    return st.one_of(dates(add_months(month, 1), dt.date(2100, 1, 1)))


def _benefit_not_negative(data, rows, i, state, month):
    rows[i]["decision"] = "approved"
    rows[i]["monthly_benefit_usd"] = "-" + data.draw(DECIMAL)


def _benefit_when_not_approved(data, rows, i, state, month):
    rows[i]["decision"] = data.draw(st.sampled_from(["denied", "pending"]))
    rows[i]["monthly_benefit_usd"] = data.draw(POSITIVE)


def _status_before_mailing(data, rows, i, state, month):
    mailed = dt.date.fromisoformat(rows[i]["mailed_date"])
    rows[i]["status_date"] = (mailed - dt.timedelta(days=data.draw(st.integers(1, 800)))).isoformat()


@st.composite
def _timestamp_elsewhere(draw, month: dt.date) -> str:
    other = draw(MONTHS.filter(lambda m: m != month))
    return draw(timestamp_in(other))


VIOLATIONS = {
    "eligibility": {
        "record_id_not_blank": _set("record_id", BLANK),
        "record_id_unique": _duplicate("record_id"),
        "first_name_not_blank": _set("first_name", BLANK),
        "last_name_not_blank": _set("last_name", BLANK),
        "ssn_9_digits_or_empty": _set("ssn", st.one_of(
            st.from_regex(r"[0-9]{1,8}|[0-9]{10,12}|[0-9]{3}-[0-9]{2}-[0-9]{4}|[A-Za-z ]{1,4}",
                          fullmatch=True).filter(lambda s: s != ""),
            st.sampled_from(["１２３４５６７８９", "٣٤٥٦٧٨٩٠١", " 123456789"]))),
        "ssn_not_all_zeros": _set("ssn", st.just("000000000")),
        "date_of_birth_is_date": _set("date_of_birth", BAD_DATES),
        "date_of_birth_between_1900_and_file_month": _set(
            "date_of_birth", lambda s, m: st.one_of(dates(dt.date(1000, 1, 1),
                                                          dt.date(1899, 12, 31)),
                                                    _outside_month(s, m))),
        "address_line1_not_blank": _set("address_line1", BLANK),
        "city_not_blank": _set("city", BLANK),
        "state_matches_file_name": _set("state", lambda s, m: st.one_of(
            st.sampled_from([x for x in STATES if x != s]), st.just(s.lower()),
            st.just(f" {s}"), st.just(""))),
        "zip_format": _set("zip", st.from_regex(
            r"[0-9]{1,4}|[0-9]{6,9}|[0-9]{5}-[0-9]{1,3}|[0-9]{5} [0-9]{4}|[A-Z]{5}|",
            fullmatch=True)),
        "phone_10_digits_or_empty": _set("phone", st.from_regex(
            r"[0-9]{1,9}|[0-9]{11,12}|\([0-9]{3}\) [0-9]{3}-[0-9]{4}|\+1[0-9]{10}",
            fullmatch=True)),
        "language_iso_639_1": _set("language", st.one_of(
            st.text("abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=2)
            .filter(lambda s: s not in contracts.ISO_639_1),
            st.sampled_from(["", "EN", "eng", "english", "en-US", " es"]))),
        "household_size_1_to_20": _set("household_size", st.one_of(
            st.integers(21, 99).map(str), st.sampled_from(["0", "00", "-1", "2.5", "", "three",
                                                            "100", "+3"]))),
        "monthly_income_is_decimal": _set("monthly_income", NOT_DECIMAL),
        "monthly_income_not_negative": _set("monthly_income", DECIMAL.map(lambda s: "-" + s)),
        **_other_code_lists("programs_enrolled"),
        "programs_eligible_not_empty": _set("programs_eligible", st.just("")),
        **_other_code_lists("programs_eligible"),
    },
    "outcomes": {
        "application_id_not_blank": _set("application_id", BLANK),
        "program_code_known": _set("program", st.sampled_from(
            ["", "snap", "FOOD_STAMPS", "SNAP ", "TANF", "Medicaid"])),
        "decision_known": _set("decision", st.sampled_from(
            ["", "Approved", "APPROVED", "approve", "denied ", "withdrawn"])),
        "decision_date_is_date": _set("decision_date", BAD_DATES),
        "decision_date_within_or_before_file_month": _set("decision_date", _outside_month),
        "monthly_benefit_usd_is_decimal": _set("monthly_benefit_usd", NOT_DECIMAL),
        "monthly_benefit_usd_not_negative": _benefit_not_negative,
        "benefit_only_when_approved": _benefit_when_not_approved,
    },
    "mailreturns": {
        "mail_piece_id_not_blank": _set("mail_piece_id", BLANK),
        "mail_piece_id_unique": _duplicate("mail_piece_id"),
        "mailed_date_is_date": _set("mailed_date", BAD_DATES),
        "status_known": _set("status", st.sampled_from(
            ["", "Delivered", "lost", "returned ", "bounced"])),
        "status_date_is_date": _set("status_date", BAD_DATES),
        "status_date_on_or_after_mailed_date": _status_before_mailing,
    },
    "nudges": {
        "event_id_not_blank": _set("event_id", BLANK),
        "event_id_unique": _duplicate("event_id"),
        "campaign_id_not_blank": _set("campaign_id", BLANK),
        "campaign_id_has_no_ssn": _set("campaign_id", st.builds(
            lambda a, ssn, b: a + ssn + b,
            st.sampled_from(["", "spring-", "x "]),
            st.from_regex(r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{9}|[0-9]{3} [0-9]{2} [0-9]{4}",
                          fullmatch=True),
            st.sampled_from(["", "-b", " call"]))),
        "arm_known": _set("arm", st.sampled_from(["", "Treatment", "treat", "A", "control "])),
        "channel_known": _set("channel", st.sampled_from(["", "SMS", "email", "text", "phone"])),
        "recipient_key_is_person_token": _set("recipient_key", st.one_of(
            st.from_regex(r"[0-9]{9}|[0-9]{3}-[0-9]{2}-[0-9]{4}", fullmatch=True),
            HEX32.map(lambda h: "TOK_" + h), HEX32.map(lambda h: "tok_" + h[:31]),
            HEX32.map(lambda h: "tok_" + h + "0"), HEX32.map(lambda h: h),
            HEX32.filter(lambda h: h.upper() != h).map(lambda h: "tok_" + h.upper()),
            st.sampled_from(["", "jane@example.com", "2155550100"]))),
        "event_type_known": _set("event_type", st.sampled_from(
            ["", "Sent", "clicked", "opted-out", "delivered "])),
        "event_ts_is_timestamp": _set("event_ts", lambda s, m: st.one_of(
            st.sampled_from([f"{m.isoformat()}T09:30:00", f"{m.isoformat()}",
                             f"{m.year}-02-30T10:00:00Z", f"{m.isoformat()}T24:00:00+00:00",
                             f"{m.isoformat()}T10:00:00+25:00", "", "now",
                             f"{m.isoformat()}T10:00:00 +00:00", f"{m:%Y%m%d}T100000Z"]),
            timestamp_in(m).map(lambda t: t.replace("-", "/", 2)))),
        "event_ts_within_file_month": _set("event_ts", lambda s, m: _timestamp_elsewhere(m)),
    },
}


def test_every_rule_has_a_random_violation():
    for feed in bf.FEEDS:
        names = {rule.name for rule in contract_rules.rules(FILE_FEED_SPECS[feed].contract)}
        assert set(VIOLATIONS[feed]) == names, feed


@pytest.mark.parametrize("feed", bf.FEEDS)
@settings(PROPERTY_SETTINGS, max_examples=60)
@given(data=st.data())
def test_single_rule_violation_is_always_caught(feed, data):
    state, month, rows = draw_file(data, feed, min_rows=2)
    rule = data.draw(st.sampled_from(sorted(VIOLATIONS[feed])), label="rule")
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    VIOLATIONS[feed][rule](data, rows, i, state, month)
    name, payload = write(data, feed, state, month, rows)
    with pytest.raises(rejections.FileRejected) as caught:
        run(feed, name, payload, state, month)
    failures = caught.value.failures
    assert [f.rule for f in failures] == [rule]
    column = {r.name: r.column for r in contract_rules.rules(FILE_FEED_SPECS[feed].contract)}[rule]
    assert failures[0].column == column
    assert 1 <= failures[0].count <= 2 and failures[0].examples
