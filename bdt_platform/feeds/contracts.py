"""The partner data contract (feeds.md) as pandera ``DataFrameModel``s.

Files are validated as text, exactly as the partner wrote them (every column a string), so a
failure report can quote the offending value. Each model also sees two context columns the loader
adds from the file name, ``file_state`` and ``file_month``, for the rules that depend on it
("state equals the state in the file name", "dates within the file's month").
Conversion to typed columns happens after validation (``feeds.parsing``) and cannot fail.

Every rule has a stable, human-readable name (``zip_format``, ``benefit_only_when_approved``)
and a one-line description; both appear in quarantine reason files and in the Dagster UI.
A rule checks one thing, so one broken rule gives one failure: a value that is not a date fails
``<column>_is_date`` only, not also the range rule on that column. Patterns, dates and
timestamps are read a whole column at a time (RE2 in ``pyarrow.compute``, numpy dates), not
value by value in Python.

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
from typing import NamedTuple

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
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

# Value patterns, run in RE2 (see "Reading text values" below).
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                     r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# SSN-shaped text inside a longer value: 123-45-6789, 123 45 6789 or nine digits on their own.
# Python syntax: ``\d`` is any Unicode digit (full-width ones too). RE2 has no lookbehind and
# its ``\d`` is ASCII only; ``_SSN_INSIDE_ASCII`` is the same test for ASCII text.
SSN_INSIDE_PATTERN = r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|(?<!\d)\d{9}(?!\d)"
CONTEXT_COLUMNS = ("file_state", "file_month")
EARLIEST_BIRTH = dt.date(1900, 1, 1)

_SSN_INSIDE_RE = re.compile(SSN_INSIDE_PATTERN)
_SSN_INSIDE_ASCII = (r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}"
                     r"|(?:^|[^0-9])[0-9]{9}(?:[^0-9]|$)")
_PROGRAM = "|".join(re.escape(code) for code in PROGRAMS)
_PROGRAM_LIST = f"(?:(?:{_PROGRAM})(?:;(?:{_PROGRAM}))*)?"  # empty, or known codes joined by ;
# What RE2 reads differently from Python's ``re``: class escapes (ASCII-only there), lookaround.
_NOT_PORTABLE = re.compile(r"\\[dDsSwWbB]|\(\?<?[=!]")


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
# The rules that compare rows with each other (values unique within a file) -> their column:
# the only rules a file read a slice at a time (``parsing``) checks across its slices.
UNIQUE_RULES: dict[str, str] = {}
FRAME_RULE_SAMPLE = 20


# ---------------------------------------------------------------------------------------------
# Reading text values, a whole column at a time (shared with ``parsing.to_table``, so what
# validates is what loads). Patterns run in RE2 (``pyarrow.compute``, C++) and must mean there
# what they mean in Python's ``re``: classes spelled out in ASCII (``[0-9]``, never ``\d``), no
# lookaround, ``$`` only as the very end of the text.

def arrow_array(values: pd.Series) -> pyarrow.Array:
    """An Arrow-backed column's own Arrow data, as one array (no copy when it is one chunk)."""
    data = pyarrow.array(values.array)
    return data.combine_chunks() if isinstance(data, pyarrow.ChunkedArray) else data


def _text(values: pd.Series) -> pyarrow.Array:
    """The column as an Arrow string array; a value that is not a ``str`` becomes null.
    Arrow-backed text (files as ``parsing`` reads them) is used as it is."""
    if isinstance(values.dtype, pd.ArrowDtype) and pyarrow.types.is_string(
            values.dtype.pyarrow_dtype):
        return arrow_array(values)
    array = values.to_numpy(dtype=object)
    if infer_dtype(array, skipna=False) not in ("string", "empty"):
        array = np.array([v if isinstance(v, str) else None for v in array], dtype=object)
    return pyarrow.array(array, type=pyarrow.string())


def _only_text(values: pd.Series) -> pyarrow.Array:
    """Like ``_text``, for rules that cannot judge anything but text: raises TypeError when a
    value is not a ``str`` (pandera then reports the rule as failed; ``Text`` names the value)."""
    text = _text(values)
    if text.null_count:
        raise TypeError(f"{values.name} holds values that are not text")
    return text


def _booleans(flags: pyarrow.Array) -> np.ndarray:
    """An Arrow boolean array as numpy booleans, null counting as False."""
    return flags.fill_null(False).to_numpy(zero_copy_only=False)


def _fullmatch(text: pyarrow.Array, pattern: str) -> np.ndarray:
    """Per value: the whole text matches ``pattern`` (RE2); null -> False."""
    return _booleans(pc.match_substring_regex(text, f"^(?:{pattern})$"))


def _ascii_codes(text: pyarrow.Array, start: int, width: int) -> np.ndarray:
    """Characters ``start`` .. ``start + width`` of each value (a negative ``start`` counts
    from the end) as an (n, width) matrix of character codes, spaces past a value's end.
    Values must be ASCII (``_shaped``); anything else makes the cast below raise."""
    stop = start + width if start + width != 0 else None  # (-6, 0) would slice nothing
    fixed = pc.utf8_rpad(pc.utf8_slice_codeunits(text, start, stop), width, " ")
    fixed = fixed.cast(pyarrow.binary(width))  # every value now exactly ``width`` bytes
    return np.frombuffer(fixed.buffers()[1], np.uint8, len(fixed) * width,
                         fixed.offset * width).reshape(-1, width)


def _number(codes: np.ndarray) -> np.ndarray:
    """The number each row of ASCII digit codes spells (``b"2024"`` -> 2024), as int64."""
    return (codes.astype(np.int64) - ord("0")) @ 10 ** np.arange(codes.shape[1] - 1, -1, -1)


def _calendar_days(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` for each (year, month, day) that is a date ``datetime.date`` allows
    (years 1..9999); NaT for the rest (year 0, month 13, 2024-02-30)."""
    first = ((year - 1970) * 12 + (month - 1)).astype("datetime64[M]")
    days = first.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    real = ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
            & (days.astype("datetime64[M]") == first))  # a day past the month's end rolls over
    return np.where(real, days, np.datetime64("NaT", "D"))


def _shaped(text: pyarrow.Array, pattern: str, otherwise: str) -> pyarrow.Array:
    """``text`` where it matches ``pattern``, else ``otherwise`` (of that shape, but no real
    date, so it reads as NaT): every value is ASCII with digits where the pattern has them."""
    return pc.if_else(_fullmatch(text, pattern), text, otherwise)


def parse_dates(values: pd.Series) -> np.ndarray:
    """ISO ``YYYY-MM-DD`` text -> ``datetime64[D]``; NaT for anything else (impossible dates
    like 2024-02-30, year 0000, and values that are not text included)."""
    codes = _ascii_codes(_shaped(_text(values), DATE_PATTERN, "0000-00-00"), 0, 10)
    return _calendar_days(_number(codes[:, 0:4]), _number(codes[:, 5:7]), _number(codes[:, 8:10]))


class Timestamps(NamedTuple):
    """A column of timestamps, ``datetime64[us]`` each way; NaT where a value is not one."""

    local: np.ndarray  # the date and time as written (at the value's own offset)
    utc: np.ndarray  # the instant, in UTC


def parse_timestamps(values: pd.Series) -> Timestamps:
    """ISO 8601 timestamps with a UTC offset (``TIMESTAMP_PATTERN``), read as Python 3.11's
    ``datetime.fromisoformat`` reads them: a real date, hour <= 23, minute and second <= 59,
    the fraction cut to microseconds, and an offset ``HH:MM`` or ``HHMM`` under 24 hours (its
    minutes may exceed 59: ``+00:90`` is 1:30)."""
    text = _shaped(_text(values), TIMESTAMP_PATTERN, "0000-00-00T00:00Z")
    head = _ascii_codes(text, 0, 26)  # YYYY-MM-DDTHH:MM, then maybe :SS and .ffffff
    days = _calendar_days(_number(head[:, 0:4]), _number(head[:, 5:7]), _number(head[:, 8:10]))
    hour, minute = _number(head[:, 11:13]), _number(head[:, 14:16])
    has_seconds = head[:, 16] == ord(":")
    second = np.where(has_seconds, _number(head[:, 17:19]), 0)
    micros = np.where(head[:, 19] == ord("."), _fraction(head[:, 20:26]), 0)  # only after :SS
    offset = _offset_minutes(_ascii_codes(text, -6, 6))
    valid = (~np.isnat(days) & (hour <= 23) & (minute <= 59) & (second <= 59)
             & (np.abs(offset) < 24 * 60))
    clock = ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros
    local = np.where(valid, days.astype("datetime64[us]") + clock.astype("timedelta64[us]"),
                     np.datetime64("NaT", "us"))
    return Timestamps(local, local - (offset * 60_000_000).astype("timedelta64[us]"))


def _fraction(codes: np.ndarray) -> np.ndarray:
    """Microseconds from up to 6 characters after a decimal point: the digits up to the first
    non-digit, cut (not rounded) to 6 as ``datetime.fromisoformat`` does (``.5`` -> 500000)."""
    digits = codes.astype(np.int64) - ord("0")
    leading = np.logical_and.accumulate((digits >= 0) & (digits <= 9), axis=1)
    return np.where(leading, digits, 0) @ 10 ** np.arange(5, -1, -1)


def _offset_minutes(tail: np.ndarray) -> np.ndarray:
    """The signed UTC offset in minutes from a timestamp's last 6 characters: ``Z``, ``±HH:MM``
    or ``±HHMM`` (minutes as written may exceed 59)."""
    colon = tail[:, 3] == ord(":")
    hours = np.where(colon, _number(tail[:, 1:3]), _number(tail[:, 2:4]))
    minutes = hours * 60 + _number(tail[:, 4:6])
    west = np.where(colon, tail[:, 0], tail[:, 1]) == ord("-")
    return np.where(tail[:, 5] == ord("Z"), 0, np.where(west, -minutes, minutes))


def _file_months(frame: pd.DataFrame) -> np.ndarray:
    """Each row's file month (``datetime64[M]``). Rules read it per row, never from the first
    row: one validation may cover the rows of many files (``parsing.validate_many``)."""
    codes, months = pd.factorize(frame["file_month"])
    dates = np.array([dt.date.fromisoformat(str(month)) for month in months],
                     dtype="datetime64[D]")
    return dates.astype("datetime64[M]")[codes]


def _next_months(frame: pd.DataFrame) -> np.ndarray:
    """Per row: the first day after the row's file month (``datetime64[D]``)."""
    return (_file_months(frame) + 1).astype("datetime64[D]")


# ---------------------------------------------------------------------------------------------
# Rule builders: each returns a pandera check to assign in a model's class body.

def column_rule(column: str, name: str, description: str,
                test: Callable[[pd.Series], pd.Series | np.ndarray]):
    """A rule on one column: ``test`` maps the column's text to True (row ok) / False, as a
    Series or an array in the column's row order."""
    def check(cls, values: Series[str]) -> Series[bool]:
        return pd.Series(np.asarray(test(values)), index=values.index).astype(bool)
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


def _not_blank(values: pd.Series) -> np.ndarray:
    """Per value: ``value.strip() != ""`` (Python's whitespace); a value that is not text
    passes (the dtype rule judges it). Only values that start with whitespace, or are empty,
    are stripped in Python: any other first character already makes a value not blank."""
    text = _text(values)
    first = pc.utf8_slice_codeunits(text, 0, 1)
    spaces = [c for c in pc.unique(first).to_pylist() if c is not None and not c.strip()]
    ok = np.ones(len(text), dtype=bool)
    if spaces:
        suspects = np.flatnonzero(_booleans(pc.is_in(first, pyarrow.array(spaces))))
        ok[suspects] = [bool(value.strip()) for value in text.take(suspects).to_pylist()]
    return ok


def not_blank(column: str):
    return column_rule(column, f"{column}_not_blank", f"{column} is not empty or only spaces",
                       _not_blank)


def unique(column: str, within: str = "the file"):
    # Unique per file (per file_state x file_month), so many files can be validated in one call.
    UNIQUE_RULES[f"{column}_unique"] = column
    return frame_rule(f"{column}_unique", column, f"{column} is unique within {within}",
                      lambda f: ~f.duplicated(subset=[*CONTEXT_COLUMNS, column], keep=False))


def matches(column: str, name: str, pattern: str, description: str, *, optional: bool = False):
    """The whole value matches ``pattern`` (or, if ``optional``, is empty). ``pattern`` runs in
    RE2 and must mean the same there as in Python (see "Reading text values")."""
    if _NOT_PORTABLE.search(pattern):
        raise ValueError(f"{name}: {pattern!r} reads differently in RE2 (use [0-9], no "
                         "lookaround)")

    def test(values: pd.Series) -> np.ndarray:
        text = _only_text(values)
        found = _fullmatch(text, pattern)
        return found | _booleans(pc.equal(text, "")) if optional else found
    return column_rule(column, name, description, test)


def one_of(column: str, name: str, allowed: tuple[str, ...]):
    return column_rule(column, name, f"{column} is one of {', '.join(allowed)}",
                       lambda s: s.isin(allowed))


def is_date(column: str):
    return column_rule(column, f"{column}_is_date",
                       f"{column} is a calendar date YYYY-MM-DD (2024-02-30 is not)",
                       lambda s: ~np.isnat(parse_dates(s)))


def is_timestamp(column: str):
    return column_rule(column, f"{column}_is_timestamp",
                       f"{column} is an ISO 8601 timestamp with a UTC offset "
                       "(2024-03-06T19:36:30-05:00, ...Z), in years 1..9999 in UTC too",
                       _is_timestamp)


# The instants a Python ``datetime`` (and so the warehouse loader) can hold: years 1..9999.
FIRST_INSTANT = np.datetime64("0001-01-01", "us")
INSTANT_AFTER = np.datetime64("9999-12-31", "us") + np.timedelta64(1, "D")


def _is_timestamp(values: pd.Series) -> np.ndarray:
    """A timestamp whose UTC instant a ``datetime`` holds: ``0001-01-01T00:00+01:00`` is
    valid text, but its instant lies in year 0, so it could not be loaded."""
    utc = parse_timestamps(values).utc
    return ~np.isnat(utc) & (utc >= FIRST_INSTANT) & (utc < INSTANT_AFTER)


def is_decimal(column: str):
    return column_rule(column, f"{column}_is_decimal",
                       f"{column} is a plain decimal number like 1234.50 (no commas, $, + or "
                       "exponent)",
                       lambda s: _fullmatch(_text(s), DECIMAL_PATTERN))


def not_negative(column: str):
    # Only judged once the value is a decimal: ``is_decimal`` reports the rest.
    def test(values: pd.Series) -> np.ndarray:
        text = _only_text(values)
        return ~(_fullmatch(text, DECIMAL_PATTERN) & _booleans(pc.starts_with(text, "-")))
    return column_rule(column, f"{column}_not_negative", f"{column} is >= 0", test)


def _holds_ssn(text: pyarrow.Array) -> np.ndarray:
    """Per value: SSN-shaped text inside it (``SSN_INSIDE_PATTERN``). ASCII values are searched
    in RE2; the (rare) others with Python's ``re``, whose ``\\d`` knows every script's digits."""
    found = np.array(_booleans(pc.match_substring_regex(text, _SSN_INSIDE_ASCII)))
    other = np.flatnonzero(~_booleans(pc.string_is_ascii(text)))
    found[other] = [bool(_SSN_INSIDE_RE.search(v)) for v in text.take(other).to_pylist()]
    return found


def no_ssn_inside(column: str):
    return column_rule(column, f"{column}_has_no_ssn",
                       f"{column} holds nothing SSN-shaped (vendor files carry person tokens, "
                       "never raw identifiers)",
                       lambda s: ~_holds_ssn(_only_text(s)))


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
                       lambda s: _fullmatch(_only_text(s), _PROGRAM_LIST))


def program_codes_once(column: str):
    return column_rule(column, f"{column}_no_duplicates",
                       f"{column} names each program at most once",
                       lambda s: ~_repeats_a_code(_only_text(s)))


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
        lambda s: _fullmatch(_text(s), "0?[1-9]|1[0-9]|20"))  # 1..20 in one or two digits
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
        | ~_fullmatch(_text(f["monthly_benefit_usd"]), DECIMAL_PATTERN)  # judged by *_is_decimal
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
        lambda f: _on_or_after(f["status_date"], f["mailed_date"]))


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

def _dates_between(values: pd.Series, earliest: dt.date | None, before: np.ndarray
                   ) -> pd.Series:
    """Per row: not a date, or ``earliest <= date < before`` (``before`` given per row)."""
    dates = parse_dates(values)
    keeps = dates < before
    if earliest is not None:
        keeps &= dates >= np.datetime64(earliest, "D")
    return pd.Series(np.isnat(dates) | keeps, index=values.index)


def _on_or_after(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """Per row: either value is not a date, or the ``later`` date is on or after the other."""
    a, b = parse_dates(later), parse_dates(earlier)
    return pd.Series(np.isnat(a) | np.isnat(b) | (a >= b), index=later.index)


def _timestamps_in_month(values: pd.Series, months: np.ndarray) -> pd.Series:
    """Per row: not a timestamp, or its date as written falls in the row's file month."""
    local = parse_timestamps(values).local
    return pd.Series(np.isnat(local) | (local.astype("datetime64[M]") == months),
                     index=values.index)


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


def unique_columns(model: type[pa.DataFrameModel]) -> list[str]:
    """The columns whose values the model wants unique within a file."""
    return [UNIQUE_RULES[check.name] for check in model.to_schema().checks
            if check.name in UNIQUE_RULES]


def describe(model: type[pa.DataFrameModel]) -> str:
    """Markdown list of the file-level and the model's rules, for the UI."""
    lines = [f"- `{name}`: {text}" for name, text in FILE_RULES.items()]
    lines += [f"- `{rule.name}` ({rule.column}): {rule.description}" for rule in rules(model)]
    return "\n".join(lines)
