"""The partner data contract (feeds.md) as pandera ``DataFrameModel``s.

Files are validated as text, exactly as the partner wrote them (every column a string), so a
failure report can quote the offending value. Each model also sees two context columns the loader
adds from the file name, ``file_state`` and ``file_month``, for the rules that depend on it
("state equals the state in the file name", "dates within the file's month").
Conversion to typed columns happens after validation (``typed_table``) and cannot fail. The
rules are built from the catalogue in ``contract_rules`` (names, descriptions, reusable checks);
this module holds each feed's model and the codes its values are checked against.

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

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandas.api.types import infer_dtype
from pandera import dtypes as pandera_dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from bdt_platform.core.pii import TOKEN_PATTERN
from bdt_platform.feeds.contract_rules import (
    column_rule, dates_between, file_months, frame_rule, is_date, is_decimal, is_timestamp,
    matches, next_months, no_ssn_inside, not_blank, not_negative, on_or_after, one_of,
    state_matches, timestamps_in_month, unique)
from bdt_platform.feeds.text_values import DECIMAL_PATTERN, as_text, fullmatch, only_text

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

EARLIEST_BIRTH = dt.date(1900, 1, 1)

_PROGRAM = "|".join(re.escape(code) for code in PROGRAMS)
_PROGRAM_LIST = f"(?:(?:{_PROGRAM})(?:;(?:{_PROGRAM}))*)?"  # empty, or known codes joined by ;


# ---------------------------------------------------------------------------------------------
# Rules on lists of program codes

def _repeats_a_code(text: pyarrow.Array) -> np.ndarray:
    """Per value: some entry of its ;-separated list (known code or not) appears twice."""
    lists = pc.split_pattern(text, ";")
    rows = pc.list_parent_indices(lists).to_numpy()
    entries = pc.dictionary_encode(pc.list_flatten(lists)).indices.to_numpy()  # entry -> int
    repeated = pd.DataFrame({"row": rows, "entry": entries}).duplicated().to_numpy()
    found = np.zeros(len(text), dtype=bool)
    found[rows[repeated]] = True
    return found


def program_codes_known(column: str):
    return column_rule(column, f"{column}_known_codes",
                       f"{column} is a ;-separated list of program codes "
                       f"({', '.join(PROGRAMS)}), no spaces",
                       lambda s: fullmatch(only_text(s), _PROGRAM_LIST))


def program_codes_once(column: str):
    return column_rule(column, f"{column}_no_duplicates",
                       f"{column} names each program at most once",
                       lambda s: ~_repeats_a_code(only_text(s)))


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


def _person_rules():
    """The rules both feeds of people (``eligibility``, ``clients``) have on a person's columns,
    in the order of their names: ``first_name``, ``last_name``, ``ssn`` (two), ``date_of_birth``,
    ``phone``."""
    return (
        not_blank("first_name"),
        not_blank("last_name"),
        matches("ssn", "ssn_9_digits_or_empty", r"[0-9]{9}",
                "ssn is 9 digits (no dashes), or empty", optional=True),
        column_rule("ssn", "ssn_not_all_zeros", "ssn is never 000000000",
                    lambda s: s != "000000000"),
        is_date("date_of_birth"),
        matches("phone", "phone_10_digits_or_empty", r"[0-9]{10}",
                "phone is 10 digits (no punctuation), or empty", optional=True),
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
    (_first_name_not_blank, _last_name_not_blank, _ssn_format, _ssn_not_zeros,
     _date_of_birth_is_date, _phone_format) = _person_rules()
    _address_line1_not_blank = not_blank("address_line1")
    _city_not_blank = not_blank("city")
    _zip_format = matches("zip", "zip_format", r"[0-9]{5}(-[0-9]{4})?",
                          "zip is NNNNN or NNNNN-NNNN")
    _language = column_rule("language", "language_iso_639_1",
                            "language is an ISO 639-1 code in lower case (en, es, zh, ...)",
                            lambda s: s.isin(ISO_639_1))
    _household_size = column_rule(
        "household_size", "household_size_1_to_20", "household_size is a whole number 1..20",
        lambda s: fullmatch(as_text(s), "0?[1-9]|1[0-9]|20"))  # 1..20 in one or two digits
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
        lambda f: dates_between(f["date_of_birth"], EARLIEST_BIRTH, next_months(f)))


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
        lambda f: dates_between(f["decision_date"], None, next_months(f)))
    _benefit_only_when_approved = frame_rule(
        "benefit_only_when_approved", "monthly_benefit_usd",
        "monthly_benefit_usd is 0 unless decision is approved",
        lambda f: ~f["decision"].isin(DECISIONS) | (f["decision"] == "approved")
        | ~fullmatch(as_text(f["monthly_benefit_usd"]), DECIMAL_PATTERN)  # judged by *_is_decimal
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
        lambda f: on_or_after(f["status_date"], f["mailed_date"]))


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
        lambda f: timestamps_in_month(f["event_ts"], file_months(f)))


class CaseManagementContract(FileContract):
    """What every case-management extract shares: ``updated_at`` is a timestamp and ``state``
    the partition's state. (Each extract declares both columns, in its own column order; pandera
    runs these checks after the extract's own.)"""

    _updated_at = is_timestamp("updated_at")
    _state_matches = state_matches("state_matches_partition", "state equals the partition's state")


def _extract_id_rules(column: str):
    """A case-management extract's id column: never blank, unique within the partition."""
    return not_blank(column), unique(column, "the partition")


class ClientsContract(CaseManagementContract):
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

    _client_id_not_blank, _client_id_unique = _extract_id_rules("client_id")
    (_first_name_not_blank, _last_name_not_blank, _ssn_format, _ssn_not_zeros,
     _date_of_birth_is_date, _phone_format) = _person_rules()
    _zip_format = matches("zip", "zip_format_or_empty", r"[0-9]{5}(-[0-9]{4})?",
                          "zip is NNNNN or NNNNN-NNNN, or empty", optional=True)
    _language = column_rule("language", "language_iso_639_1_or_empty",
                            "language is an ISO 639-1 code in lower case, or empty",
                            lambda s: (s == "") | s.isin(ISO_639_1))
    _created_at = is_timestamp("created_at")


class ApplicationsContract(CaseManagementContract):
    """Case-management ``applications`` submitted with our help."""

    application_id: Series[Text]
    client_id: Series[Text]
    program: Series[Text]
    state: Series[Text]
    channel: Series[Text]
    submitted_at: Series[Text]
    updated_at: Series[Text]

    _application_id_not_blank, _application_id_unique = _extract_id_rules("application_id")
    _client_id_not_blank = not_blank("client_id")
    _program = one_of("program", "program_code_known", PROGRAMS)
    _channel = one_of("channel", "channel_known", APPLICATION_CHANNELS)
    _submitted_at = is_timestamp("submitted_at")


class CallsContract(CaseManagementContract):
    """Case-management ``calls`` between clients and our call center."""

    call_id: Series[Text]
    client_id: Series[Text]
    state: Series[Text]
    started_at: Series[Text]
    duration_s: Series[Text]
    outcome: Series[Text]
    updated_at: Series[Text]

    _call_id_not_blank, _call_id_unique = _extract_id_rules("call_id")
    _client_id_not_blank = not_blank("client_id")
    _started_at = is_timestamp("started_at")
    _duration = matches("duration_s", "duration_s_whole_seconds", r"[0-9]+",
                        "duration_s is a whole number of seconds")
    _outcome_not_blank = not_blank("outcome")
