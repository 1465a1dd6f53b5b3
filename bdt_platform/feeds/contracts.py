"""The partner data contract (feeds.md) as pandera ``DataFrameModel``s.

Files are validated as text, exactly as the partner wrote them (every column a string), so a
failure report can quote the offending value. Each model also sees two context columns the loader
adds from the file name, ``file_state`` and ``file_month``, for the rules that depend on it
("state equals the state in the file name", "dates within the file's month").
Conversion to typed columns happens after validation (``feeds.parsing``) and cannot fail.

Every rule has a stable, human-readable name (``zip_format``, ``benefit_only_when_approved``)
and a one-line description; both appear in quarantine reason files and in the Dagster UI.
A rule checks one thing, so one broken rule gives one failure: a value that is not a date fails
``<column>_is_date`` only, not also the range rule on that column.

Decisions where feeds.md is silent (what a user would expect):

* "non-empty" means "not empty and not only whitespace".
* Values are taken verbatim: no trimming, no case folding. ``" PA"`` is not ``PA``; ``snap`` is
  not a program code. Odd but valid text (quotes, commas, SQL fragments, any script) is kept.
* ``programs_enrolled`` may be empty; a non-empty list must consist of known codes, each once
  (``SNAP;;WIC``, ``SNAP;`` and ``SNAP; WIC`` hold an unknown, empty or padded code).
  That an eligible program is not also listed as enrolled is not enforced (feeds.md describes
  it but does not make it a rule; the mail list logic handles an overlap).
* Dates must exist on the calendar (``2024-02-30`` is not a date). Timestamps need a UTC offset
  (``Z``, ``+00:00`` or ``+0000``); seconds may be omitted. "Within the file's month" compares
  the date as the partner wrote it (local time at the given offset), so an event at
  ``2024-03-31T22:00:00-05:00`` belongs to the March file.
* Digits are ASCII digits: ``１２３４５６７８９`` (full-width) is not an SSN, ZIP or number.
* ``email`` has no format rule (feeds.md: "may be empty"). ``language`` must be a real ISO 639-1
  code, lower case. SSNs are checked as feeds.md says (9 digits, not all zeros) and not against
  the SSA's area/group rules, so ITINs in the SSN field are accepted.
* ``campaign_id`` in the nudge vendor's file must not carry anything SSN-shaped: vendor files
  hold person tokens, never raw identifiers. ``recipient_key`` must be a person token.
* Outcomes' ``application_id`` need not be unique or match case management here: unmatched ones
  are reported downstream, not rejected (feeds.md). No rule ties ``event_type`` to ``channel``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype
from pandera import dtypes as pandera_dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from bdt_platform.pii import TOKEN_PATTERN

PROGRAMS = ("SNAP", "MEDICAID", "LIHEAP", "WIC", "MSP", "EXTRA_HELP")
DECISIONS = ("approved", "denied", "pending")
MAIL_STATUSES = ("delivered", "returned", "undeliverable", "forwarded")
ARMS = ("treatment", "control")
CHANNELS = ("sms", "call")
EVENT_TYPES = ("sent", "delivered", "replied", "opted_out", "call_completed", "failed")
APPLICATION_CHANNELS = ("phone", "web", "mail")
# ISO 639-1 two-letter language codes (the 183 current codes plus the deprecated ``bh``, ``sh``).
ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de
dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id
ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu
lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu
rm rn ro ru rw sa sc sd se sg sh si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to
tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu
""".split())

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                     r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# SSN-shaped text inside a longer value: 123-45-6789, 123 45 6789 or nine digits on their own.
SSN_INSIDE_PATTERN = r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|(?<!\d)\d{9}(?!\d)"
CONTEXT_COLUMNS = ("file_state", "file_month")
EARLIEST_BIRTH = dt.date(1900, 1, 1)

_DATE_RE = re.compile(DATE_PATTERN)
_TIMESTAMP_RE = re.compile(TIMESTAMP_PATTERN)


@dataclass(frozen=True)
class Rule:
    """One contract rule as people see it: stable name, the column it is about, what it says."""

    name: str
    column: str | None
    description: str


# Rules checked before pandera (bytes -> text -> CSV -> columns). Same names everywhere.
FILE_RULES: dict[str, str] = {
    "gzip_readable": "a file named .csv.gz is a complete, readable gzip stream",
    "compression_matches_file_name": "a gzip-compressed file is named .csv.gz (and a .csv is "
                                     "plain text)",
    "file_not_empty": "the file holds at least a header row",
    "utf8_encoding": "the file is UTF-8 text (a leading BOM is tolerated and stripped)",
    "text_not_binary": "the file is text: no NUL or other control characters besides tab, "
                       "CR and LF",
    "csv_well_formed": "comma-separated with \"\" quoting: every quoted field is closed and "
                       "followed by a comma or the end of the line",
    "header_row_present": "the first row is the header naming the contract's columns",
    "required_columns_present": "every column of the contract is in the header",
    "no_unexpected_columns": "the header holds no column the contract does not define",
    "unique_column_names": "no column name appears twice in the header",
    "field_count_matches_header": "every row has as many fields as the header",
}

# Dataframe-level rules report no column of their own; the column they are about. (Keyed by
# rule name: models may share a cross-field rule only if it means the same in each.)
RULE_COLUMNS: dict[str, str] = {}
# Their tests, by rule name: ``test(frame) -> Series[bool]`` (True where a row keeps the rule).
FRAME_RULE_TESTS: dict[str, Callable[[pd.DataFrame], pd.Series]] = {}
FRAME_RULE_SAMPLE = 20


# ---------------------------------------------------------------------------------------------
# Parsing text values (shared with ``parsing.to_table``, so what validates is what loads)

def _parse_date(text: str) -> dt.date | None:
    if not _DATE_RE.match(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _parse_timestamp(text: str) -> dt.datetime | None:
    if not _TIMESTAMP_RE.match(text):
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def as_date(values: pd.Series) -> pd.Series:
    """ISO ``YYYY-MM-DD`` text -> ``datetime.date`` objects; anything else (including impossible
    dates like 2024-02-30) -> None."""
    return pd.Series([_parse_date(v) if isinstance(v, str) else None for v in values],
                     index=values.index, dtype="object")


def as_timestamp(values: pd.Series) -> pd.Series:
    """ISO 8601 timestamps with an offset -> aware ``datetime`` objects; anything else -> None."""
    return pd.Series([_parse_timestamp(v) if isinstance(v, str) else None for v in values],
                     index=values.index, dtype="object")


def _file_months(frame: pd.DataFrame) -> pd.Series:
    """Each row's file month as a date. Rules read it per row, never from the first row: one
    validation may cover the rows of many files (``parsing.validate_many``)."""
    months = frame["file_month"]
    lookup = {text: dt.date.fromisoformat(str(text)) for text in months.unique()}
    return months.map(lookup)


def _next_months(frame: pd.DataFrame) -> pd.Series:
    """Per row: the first day after the row's file month."""
    return _file_months(frame).map(_next_month)


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


# ---------------------------------------------------------------------------------------------
# Rule builders: each returns a pandera check to assign in a model's class body.

def column_rule(column: str, name: str, description: str,
                test: Callable[[pd.Series], pd.Series]):
    """A rule on one column: ``test`` maps the column's text to True (row ok) / False."""
    def check(cls, values: Series[str]) -> Series[bool]:
        return test(values).astype(bool)
    check.__name__ = name
    return pa.check(column, name=name, error=description, ignore_na=False)(check)


def frame_rule(name: str, column: str, description: str,
               test: Callable[[pd.DataFrame], pd.Series]):
    """A cross-field rule; ``column`` is the column failures are reported on."""
    def check(cls, frame: pd.DataFrame) -> Series[bool]:
        if frame.empty:
            return pd.Series(True, index=frame.index)
        return test(frame).astype(bool)
    RULE_COLUMNS[name] = column
    FRAME_RULE_TESTS[name] = lambda frame: check(None, frame)
    check.__name__ = name
    # pandera reports a failing dataframe check with every column of every failing row, and
    # reshaping that is quadratic in the rows: keep a sample; ``parsing`` re-runs the check for
    # the exact rows and count.
    return pa.dataframe_check(name=name, error=description, ignore_na=False,
                              n_failure_cases=FRAME_RULE_SAMPLE)(check)


def not_blank(column: str):
    return column_rule(column, f"{column}_not_blank", f"{column} is not empty or only spaces",
                       lambda s: s.str.strip() != "")


def unique(column: str, within: str = "the file"):
    # Unique per file (per file_state x file_month), so many files can be validated in one call.
    return frame_rule(f"{column}_unique", column, f"{column} is unique within {within}",
                      lambda f: ~f.duplicated(subset=[*CONTEXT_COLUMNS, column], keep=False))


def matches(column: str, name: str, pattern: str, description: str, *, optional: bool = False):
    regex = re.compile(pattern)

    def test(values: pd.Series) -> pd.Series:
        return values.map(lambda v: (optional and v == "") or bool(regex.fullmatch(v)))
    return column_rule(column, name, description, test)


def one_of(column: str, name: str, allowed: tuple[str, ...]):
    return column_rule(column, name, f"{column} is one of {', '.join(allowed)}",
                       lambda s: s.isin(allowed))


def is_date(column: str):
    return column_rule(column, f"{column}_is_date",
                       f"{column} is a calendar date YYYY-MM-DD (2024-02-30 is not)",
                       lambda s: as_date(s).notna())


def is_timestamp(column: str):
    return column_rule(column, f"{column}_is_timestamp",
                       f"{column} is an ISO 8601 timestamp with a UTC offset "
                       "(2024-03-06T19:36:30-05:00, ...Z)",
                       lambda s: as_timestamp(s).notna())


def is_decimal(column: str):
    return column_rule(column, f"{column}_is_decimal",
                       f"{column} is a plain decimal number like 1234.50 (no commas, $, + or "
                       "exponent)",
                       lambda s: s.str.fullmatch(DECIMAL_PATTERN))


def not_negative(column: str):
    # Only judged once the value is a decimal: ``is_decimal`` reports the rest.
    return column_rule(column, f"{column}_not_negative", f"{column} is >= 0",
                       lambda s: ~s.str.fullmatch(DECIMAL_PATTERN) | ~s.str.startswith("-"))


def no_ssn_inside(column: str):
    return column_rule(column, f"{column}_has_no_ssn",
                       f"{column} holds nothing SSN-shaped (vendor files carry person tokens, "
                       "never raw identifiers)",
                       lambda s: ~s.str.contains(SSN_INSIDE_PATTERN, regex=True))


def _codes(text: str) -> list[str]:
    return text.split(";") if text != "" else []


def program_codes_known(column: str):
    return column_rule(column, f"{column}_known_codes",
                       f"{column} is a ;-separated list of program codes "
                       f"({', '.join(PROGRAMS)}), no spaces",
                       lambda s: s.map(lambda v: all(code in PROGRAMS for code in _codes(v))))


def program_codes_once(column: str):
    return column_rule(column, f"{column}_no_duplicates",
                       f"{column} names each program at most once",
                       lambda s: s.map(lambda v: len(set(_codes(v))) == len(_codes(v))))


def state_matches(name: str, description: str):
    return frame_rule(name, "state", description,
                      lambda f: f["state"] == f["file_state"])


# ---------------------------------------------------------------------------------------------
# The contracts

@pandas_engine.Engine.register_dtype
@pandera_dtypes.immutable
class Text(pandas_engine.NpString):
    """A text column as read from a file: every value a Python ``str``. pandera's ``str`` check
    calls ``isinstance`` once per value in Python; this one asks pandas for the column's
    inferred type (one pass in C) and falls back to pandera's own check (and its failure
    cases) only when the column holds anything else."""

    def check(self, pandera_dtype, data_container=None):
        if data_container is not None and infer_dtype(data_container, skipna=False) in (
                "string", "empty"):
            return True
        return super().check(pandera_dtype, data_container)


class FileContract(pa.DataFrameModel):
    """Context every feed shares: the state and month named in the file name."""

    file_state: Series[Text]
    file_month: Series[Text]

    class Config:
        strict = True
        coerce = False


def _ssn_rules():
    return (
        matches("ssn", "ssn_9_digits_or_empty", r"[0-9]{9}",
                "ssn is 9 digits (no dashes), or empty", optional=True),
        column_rule("ssn", "ssn_not_all_zeros", "ssn is never 000000000",
                    lambda s: s != "000000000"),
    )


class EligibilityContract(FileContract):
    """``eligibility``: people a partner believes eligible for benefits they do not receive."""

    record_id: Series[Text]
    first_name: Series[Text]
    last_name: Series[Text]
    ssn: Series[Text]
    date_of_birth: Series[Text]
    address_line1: Series[Text]
    address_line2: Series[Text]
    city: Series[Text]
    state: Series[Text]
    zip: Series[Text]
    phone: Series[Text]
    email: Series[Text]
    language: Series[Text]
    household_size: Series[Text]
    monthly_income: Series[Text]
    programs_enrolled: Series[Text]
    programs_eligible: Series[Text]

    _record_id_not_blank = not_blank("record_id")
    _record_id_unique = unique("record_id")
    _first_name_not_blank = not_blank("first_name")
    _last_name_not_blank = not_blank("last_name")
    _ssn_format, _ssn_not_zeros = _ssn_rules()
    _date_of_birth_is_date = is_date("date_of_birth")
    _address_line1_not_blank = not_blank("address_line1")
    _city_not_blank = not_blank("city")
    _zip_format = matches("zip", "zip_format", r"[0-9]{5}(-[0-9]{4})?",
                          "zip is NNNNN or NNNNN-NNNN")
    _phone_format = matches("phone", "phone_10_digits_or_empty", r"[0-9]{10}",
                            "phone is 10 digits (no punctuation), or empty", optional=True)
    _language = column_rule("language", "language_iso_639_1",
                            "language is an ISO 639-1 code in lower case (en, es, zh, ...)",
                            lambda s: s.isin(ISO_639_1))
    _household_size = column_rule(
        "household_size", "household_size_1_to_20", "household_size is a whole number 1..20",
        lambda s: s.str.fullmatch(r"[0-9]{1,2}") & pd.to_numeric(s, errors="coerce").between(1, 20))
    _monthly_income_is_decimal = is_decimal("monthly_income")
    _monthly_income_not_negative = not_negative("monthly_income")
    _enrolled_known = program_codes_known("programs_enrolled")
    _enrolled_once = program_codes_once("programs_enrolled")
    _eligible_not_empty = column_rule(
        "programs_eligible", "programs_eligible_not_empty",
        "programs_eligible names at least one program", lambda s: s != "")
    _eligible_known = program_codes_known("programs_eligible")
    _eligible_once = program_codes_once("programs_eligible")
    _state_matches = state_matches("state_matches_file_name",
                                   "state equals the state in the file name")
    _date_of_birth_range = frame_rule(
        "date_of_birth_between_1900_and_file_month", "date_of_birth",
        "date_of_birth is between 1900-01-01 and the end of the file's month",
        lambda f: _dates_between(f["date_of_birth"], EARLIEST_BIRTH, _next_months(f)))


class OutcomesContract(FileContract):
    """``outcomes``: state decisions on applications we helped submit."""

    application_id: Series[Text]
    program: Series[Text]
    decision: Series[Text]
    decision_date: Series[Text]
    monthly_benefit_usd: Series[Text]

    _application_id_not_blank = not_blank("application_id")
    _program = one_of("program", "program_code_known", PROGRAMS)
    _decision = one_of("decision", "decision_known", DECISIONS)
    _decision_date_is_date = is_date("decision_date")
    _benefit_is_decimal = is_decimal("monthly_benefit_usd")
    _benefit_not_negative = not_negative("monthly_benefit_usd")
    _decision_date_range = frame_rule(
        "decision_date_within_or_before_file_month", "decision_date",
        "decision_date is in the file's month or earlier",
        lambda f: _dates_between(f["decision_date"], None, _next_months(f)))
    _benefit_only_when_approved = frame_rule(
        "benefit_only_when_approved", "monthly_benefit_usd",
        "monthly_benefit_usd is 0 unless decision is approved",
        lambda f: ~f["decision"].isin(DECISIONS) | (f["decision"] == "approved")
        | ~f["monthly_benefit_usd"].str.fullmatch(DECIMAL_PATTERN)
        | (pd.to_numeric(f["monthly_benefit_usd"], errors="coerce") == 0))


class MailReturnsContract(FileContract):
    """``mailreturns``: what became of each mail piece, from the print-and-mail vendor."""

    mail_piece_id: Series[Text]
    mailed_date: Series[Text]
    status: Series[Text]
    status_date: Series[Text]

    _mail_piece_id_not_blank = not_blank("mail_piece_id")
    _mail_piece_id_unique = unique("mail_piece_id")
    _mailed_date_is_date = is_date("mailed_date")
    _status = one_of("status", "status_known", MAIL_STATUSES)
    _status_date_is_date = is_date("status_date")
    _status_after_mailing = frame_rule(
        "status_date_on_or_after_mailed_date", "status_date",
        "status_date is on or after mailed_date",
        lambda f: _on_or_after(as_date(f["status_date"]), as_date(f["mailed_date"])))


class NudgesContract(FileContract):
    """``nudges``: text and call campaign events from the nudge vendor."""

    event_id: Series[Text]
    campaign_id: Series[Text]
    arm: Series[Text]
    channel: Series[Text]
    recipient_key: Series[Text]
    event_type: Series[Text]
    event_ts: Series[Text]

    _event_id_not_blank = not_blank("event_id")
    _event_id_unique = unique("event_id")
    _campaign_id_not_blank = not_blank("campaign_id")
    _campaign_id_no_ssn = no_ssn_inside("campaign_id")
    _arm = one_of("arm", "arm_known", ARMS)
    _channel = one_of("channel", "channel_known", CHANNELS)
    _recipient_key = matches(
        "recipient_key", "recipient_key_is_person_token", TOKEN_PATTERN[1:-1],
        "recipient_key is a person token (tok_ + 32 lower-case hex), never raw PII such as an SSN")
    _event_type = one_of("event_type", "event_type_known", EVENT_TYPES)
    _event_ts_is_timestamp = is_timestamp("event_ts")
    _event_ts_in_month = frame_rule(
        "event_ts_within_file_month", "event_ts",
        "event_ts falls in the file's month (its date as written, at its own offset)",
        lambda f: _timestamps_in_month(f["event_ts"], _file_months(f)))


class ClientsContract(FileContract):
    """Case-management ``clients``: people who called or applied through us."""

    client_id: Series[Text]
    first_name: Series[Text]
    last_name: Series[Text]
    ssn: Series[Text]
    date_of_birth: Series[Text]
    address_line1: Series[Text]
    address_line2: Series[Text]
    city: Series[Text]
    state: Series[Text]
    zip: Series[Text]
    phone: Series[Text]
    email: Series[Text]
    language: Series[Text]
    created_at: Series[Text]
    updated_at: Series[Text]

    _client_id_not_blank = not_blank("client_id")
    _client_id_unique = unique("client_id", "the partition")
    _first_name_not_blank = not_blank("first_name")
    _last_name_not_blank = not_blank("last_name")
    _ssn_format, _ssn_not_zeros = _ssn_rules()
    _date_of_birth_is_date = is_date("date_of_birth")
    _zip_format = matches("zip", "zip_format_or_empty", r"[0-9]{5}(-[0-9]{4})?",
                          "zip is NNNNN or NNNNN-NNNN, or empty", optional=True)
    _phone_format = matches("phone", "phone_10_digits_or_empty", r"[0-9]{10}",
                            "phone is 10 digits (no punctuation), or empty", optional=True)
    _language = column_rule("language", "language_iso_639_1_or_empty",
                            "language is an ISO 639-1 code in lower case, or empty",
                            lambda s: (s == "") | s.isin(ISO_639_1))
    _created_at = is_timestamp("created_at")
    _updated_at = is_timestamp("updated_at")
    _state_matches = state_matches("state_matches_partition", "state equals the partition's state")


class ApplicationsContract(FileContract):
    """Case-management ``applications`` submitted with our help."""

    application_id: Series[Text]
    client_id: Series[Text]
    program: Series[Text]
    state: Series[Text]
    channel: Series[Text]
    submitted_at: Series[Text]
    updated_at: Series[Text]

    _application_id_not_blank = not_blank("application_id")
    _application_id_unique = unique("application_id", "the partition")
    _client_id_not_blank = not_blank("client_id")
    _program = one_of("program", "program_code_known", PROGRAMS)
    _channel = one_of("channel", "channel_known", APPLICATION_CHANNELS)
    _submitted_at = is_timestamp("submitted_at")
    _updated_at = is_timestamp("updated_at")
    _state_matches = state_matches("state_matches_partition", "state equals the partition's state")


class CallsContract(FileContract):
    """Case-management ``calls`` between clients and our call center."""

    call_id: Series[Text]
    client_id: Series[Text]
    state: Series[Text]
    started_at: Series[Text]
    duration_s: Series[Text]
    outcome: Series[Text]
    updated_at: Series[Text]

    _call_id_not_blank = not_blank("call_id")
    _call_id_unique = unique("call_id", "the partition")
    _client_id_not_blank = not_blank("client_id")
    _started_at = is_timestamp("started_at")
    _duration = matches("duration_s", "duration_s_whole_seconds", r"[0-9]+",
                        "duration_s is a whole number of seconds")
    _outcome_not_blank = not_blank("outcome")
    _updated_at = is_timestamp("updated_at")
    _state_matches = state_matches("state_matches_partition", "state equals the partition's state")


# ---------------------------------------------------------------------------------------------
# Helpers for the cross-field rules. A value that is not a date at all passes these: the
# column's ``_is_date``/``_is_timestamp`` rule reports it, once.

def _dates_between(values: pd.Series, earliest: dt.date | None, before: pd.Series) -> pd.Series:
    """Per row: not a date, or ``earliest <= date < before`` (``before`` given per row)."""
    dates = as_date(values)
    return pd.Series([d is None or ((earliest is None or d >= earliest) and d < limit)
                      for d, limit in zip(dates, before)], index=values.index, dtype=bool)


def _on_or_after(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return pd.Series([a is None or b is None or a >= b for a, b in zip(later, earlier)],
                     index=later.index)


def _timestamps_in_month(values: pd.Series, months: pd.Series) -> pd.Series:
    """Per row: not a timestamp, or its date as written falls in the row's file month."""
    stamps = as_timestamp(values)
    return pd.Series([t is None or (t.year, t.month) == (m.year, m.month)
                      for t, m in zip(stamps, months)], index=values.index, dtype=bool)


def rules(model: type[pa.DataFrameModel]) -> list[Rule]:
    """The model's rules in contract order: by the column they are about (in column order),
    each column's own rules before the cross-field rules reported on it."""
    schema = model.to_schema()
    found = [Rule(check.name, name, check.error) for name, column in schema.columns.items()
             for check in column.checks]
    found += [Rule(check.name, RULE_COLUMNS.get(check.name), check.error)
              for check in schema.checks]
    position = {name: index for index, name in enumerate(schema.columns)}
    return sorted(found, key=lambda rule: position.get(rule.column, len(position)))


def describe(model: type[pa.DataFrameModel]) -> str:
    """Markdown list of the file-level and the model's rules, for the UI."""
    lines = [f"- `{name}`: {text}" for name, text in FILE_RULES.items()]
    lines += [f"- `{rule.name}` ({rule.column}): {rule.description}" for rule in rules(model)]
    return "\n".join(lines)
