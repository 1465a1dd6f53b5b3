"""Reading text values a whole column at a time: patterns, dates, timestamps, decimals.

Shared by the contract's rules (``contract_rules``, ``contracts``) and the typed table
(``typed_table``), so what validates is what loads. Patterns run in RE2 (``pyarrow.compute``,
C++) and must mean there what they mean in Python's ``re``: classes spelled out in ASCII
(``[0-9]``, never ``\\d``), no lookaround, ``$`` only as the very end of the text. Dates and
timestamps are read with numpy, not value by value in Python.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.compute as pc
from pandas.api.types import infer_dtype

DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
                     r"(Z|[+-][0-9]{2}:?[0-9]{2})$")
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"


def arrow_array(values: pd.Series) -> pyarrow.Array:
    """An Arrow-backed column's own Arrow data, as one array (no copy when it is one chunk)."""
    data = pyarrow.array(values.array)
    return data.combine_chunks() if isinstance(data, pyarrow.ChunkedArray) else data


def as_text(values: pd.Series) -> pyarrow.Array:
    """The column as an Arrow string array; a value that is not a ``str`` becomes null.
    Arrow-backed text (files as ``csv_reader`` reads them) is used as it is."""
    if isinstance(values.dtype, pd.ArrowDtype) and pyarrow.types.is_string(
            values.dtype.pyarrow_dtype):
        return arrow_array(values)
    array = values.to_numpy(dtype=object)
    if infer_dtype(array, skipna=False) not in ("string", "empty"):
        array = np.array([v if isinstance(v, str) else None for v in array], dtype=object)
    return pyarrow.array(array, type=pyarrow.string())


def only_text(values: pd.Series) -> pyarrow.Array:
    """Like ``as_text``, for rules that cannot judge anything but text: raises TypeError when a
    value is not a ``str`` (pandera then reports the rule as failed; ``contracts.Text`` names the
    value)."""
    text = as_text(values)
    if text.null_count:
        raise TypeError(f"{values.name} holds values that are not text")
    return text


def booleans(flags: pyarrow.Array) -> np.ndarray:
    """An Arrow boolean array as numpy booleans, null counting as False."""
    return flags.fill_null(False).to_numpy(zero_copy_only=False)


def fullmatch(text: pyarrow.Array, pattern: str) -> np.ndarray:
    """Per value: the whole text matches ``pattern`` (RE2); null -> False."""
    return booleans(pc.match_substring_regex(text, f"^(?:{pattern})$"))


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
    return pc.if_else(fullmatch(text, pattern), text, otherwise)


def parse_dates(values: pd.Series) -> np.ndarray:
    """ISO ``YYYY-MM-DD`` text -> ``datetime64[D]``; NaT for anything else (impossible dates
    like 2024-02-30, year 0000, and values that are not text included)."""
    codes = _ascii_codes(_shaped(as_text(values), DATE_PATTERN, "0000-00-00"), 0, 10)
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
    text = _shaped(as_text(values), TIMESTAMP_PATTERN, "0000-00-00T00:00Z")
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


# The instants a Python ``datetime`` (and so the warehouse loader) can hold: years 1..9999.
FIRST_INSTANT = np.datetime64("0001-01-01", "us")
INSTANT_AFTER = np.datetime64("9999-12-31", "us") + np.timedelta64(1, "D")
