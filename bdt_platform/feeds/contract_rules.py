"""The rule catalogue: every contract rule's stable name and description, and the builders the
per-feed contracts (``contracts``) are written with.

Every rule has a stable, human-readable name (``zip_format``, ``benefit_only_when_approved``)
and a one-line description; both appear in quarantine reason files and in the Dagster UI. The
rules checked before pandera (bytes -> text -> CSV -> columns) are ``FILE_RULES``; the others
are pandera checks made here (``column_rule``, ``frame_rule`` and the builders on them), each
reading a whole column at a time (``text_values``). A rule checks one thing, so one broken rule
gives one failure: a value that is not a date fails ``<column>_is_date`` only, not also the
range rule on that column. ``rules`` and ``describe`` list a contract's rules in order.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
from pandera.typing import Series

from bdt_platform.feeds.text_values import (DECIMAL_PATTERN, FIRST_INSTANT, INSTANT_AFTER,
                                            as_text, booleans, fullmatch, only_text,
                                            parse_dates, parse_timestamps)

# SSN-shaped text inside a longer value: 123-45-6789, 123 45 6789 or nine digits on their own.
# Python syntax: ``\d`` is any Unicode digit (full-width ones too). RE2 has no lookbehind and
# its ``\d`` is ASCII only; ``_SSN_INSIDE_ASCII`` is the same test for ASCII text.
SSN_INSIDE_PATTERN = r"\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4}|(?<!\d)\d{9}(?!\d)"
# The columns every model sees besides the file's: the state and month of its file name.
CONTEXT_COLUMNS = ("file_state", "file_month")

_SSN_INSIDE_RE = re.compile(SSN_INSIDE_PATTERN)
_SSN_INSIDE_ASCII = (r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}"
                     r"|(?:^|[^0-9])[0-9]{9}(?:[^0-9]|$)")
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
# the only rules a file read a slice at a time (``slices``) checks across its slices.
UNIQUE_RULES: dict[str, str] = {}
FRAME_RULE_SAMPLE = 20


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
    # reshaping that is quadratic in the rows: keep a sample; ``validation`` re-runs the check
    # for the exact rows and count.
    return pa.dataframe_check(name=name, error=description, ignore_na=False,
                              n_failure_cases=FRAME_RULE_SAMPLE)(check)


def _not_blank(values: pd.Series) -> np.ndarray:
    """Per value: ``value.strip() != ""`` (Python's whitespace); a value that is not text
    passes (the dtype rule judges it). Only values that start with whitespace, or are empty,
    are stripped in Python: any other first character already makes a value not blank."""
    text = as_text(values)
    first = pc.utf8_slice_codeunits(text, 0, 1)
    spaces = [c for c in pc.unique(first).to_pylist() if c is not None and not c.strip()]
    ok = np.ones(len(text), dtype=bool)
    if spaces:
        suspects = np.flatnonzero(booleans(pc.is_in(first, pyarrow.array(spaces))))
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
    RE2 and must mean the same there as in Python (see ``text_values``)."""
    if _NOT_PORTABLE.search(pattern):
        raise ValueError(f"{name}: {pattern!r} reads differently in RE2 (use [0-9], no "
                         "lookaround)")

    def test(values: pd.Series) -> np.ndarray:
        text = only_text(values)
        found = fullmatch(text, pattern)
        return found | booleans(pc.equal(text, "")) if optional else found
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


def _is_timestamp(values: pd.Series) -> np.ndarray:
    """A timestamp whose UTC instant a ``datetime`` holds: ``0001-01-01T00:00+01:00`` is
    valid text, but its instant lies in year 0, so it could not be loaded."""
    utc = parse_timestamps(values).utc
    return ~np.isnat(utc) & (utc >= FIRST_INSTANT) & (utc < INSTANT_AFTER)


def is_decimal(column: str):
    return column_rule(column, f"{column}_is_decimal",
                       f"{column} is a plain decimal number like 1234.50 (no commas, $, + or "
                       "exponent)",
                       lambda s: fullmatch(as_text(s), DECIMAL_PATTERN))


def not_negative(column: str):
    # Only judged once the value is a decimal: ``is_decimal`` reports the rest.
    def test(values: pd.Series) -> np.ndarray:
        text = only_text(values)
        return ~(fullmatch(text, DECIMAL_PATTERN) & booleans(pc.starts_with(text, "-")))
    return column_rule(column, f"{column}_not_negative", f"{column} is >= 0", test)


def _holds_ssn(text: pyarrow.Array) -> np.ndarray:
    """Per value: SSN-shaped text inside it (``SSN_INSIDE_PATTERN``). ASCII values are searched
    in RE2; the (rare) others with Python's ``re``, whose ``\\d`` knows every script's digits."""
    found = np.array(booleans(pc.match_substring_regex(text, _SSN_INSIDE_ASCII)))
    other = np.flatnonzero(~booleans(pc.string_is_ascii(text)))
    found[other] = [bool(_SSN_INSIDE_RE.search(v)) for v in text.take(other).to_pylist()]
    return found


def no_ssn_inside(column: str):
    return column_rule(column, f"{column}_has_no_ssn",
                       f"{column} holds nothing SSN-shaped (vendor files carry person tokens, "
                       "never raw identifiers)",
                       lambda s: ~_holds_ssn(only_text(s)))


def state_matches(name: str, description: str):
    return frame_rule(name, "state", description,
                      lambda f: f["state"] == f["file_state"])


# ---------------------------------------------------------------------------------------------
# Helpers for the cross-field rules. A value that is not a date at all passes these: the
# column's ``_is_date``/``_is_timestamp`` rule reports it, once.

def file_months(frame: pd.DataFrame) -> np.ndarray:
    """Each row's file month (``datetime64[M]``). Rules read it per row, never from the first
    row: one validation may cover the rows of many files (``validation.validate_many``)."""
    codes, months = pd.factorize(frame["file_month"])
    dates = np.array([dt.date.fromisoformat(str(month)) for month in months],
                     dtype="datetime64[D]")
    return dates.astype("datetime64[M]")[codes]


def next_months(frame: pd.DataFrame) -> np.ndarray:
    """Per row: the first day after the row's file month (``datetime64[D]``)."""
    return (file_months(frame) + 1).astype("datetime64[D]")


def dates_between(values: pd.Series, earliest: dt.date | None, before: np.ndarray
                  ) -> pd.Series:
    """Per row: not a date, or ``earliest <= date < before`` (``before`` given per row)."""
    dates = parse_dates(values)
    keeps = dates < before
    if earliest is not None:
        keeps &= dates >= np.datetime64(earliest, "D")
    return pd.Series(np.isnat(dates) | keeps, index=values.index)


def on_or_after(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """Per row: either value is not a date, or the ``later`` date is on or after the other."""
    a, b = parse_dates(later), parse_dates(earlier)
    return pd.Series(np.isnat(a) | np.isnat(b) | (a >= b), index=later.index)


def timestamps_in_month(values: pd.Series, months: np.ndarray) -> pd.Series:
    """Per row: not a timestamp, or its date as written falls in the row's file month."""
    local = parse_timestamps(values).local
    return pd.Series(np.isnat(local) | (local.astype("datetime64[M]") == months),
                     index=values.index)


# ---------------------------------------------------------------------------------------------
# A model's rules, as people see them

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
