"""How values are spelled in the files and the database (feeds.md).

Inside the generator dates are whole days and timestamps whole seconds since 1970-01-01 UTC
(``int64`` numpy arrays); money is whole cents. These helpers turn them into the contract's text:
dates ``YYYY-MM-DD``, timestamps ISO 8601 with an explicit ``+00:00`` offset, money with exactly
two decimals. Integer arithmetic keeps every value exact, so the bytes never depend on float
rounding.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

SECONDS_PER_DAY = 86_400
_EPOCH = dt.date(1970, 1, 1)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return (day - _EPOCH).days


def dates(days: np.ndarray) -> list[str]:
    """Day numbers -> ``YYYY-MM-DD`` strings."""
    return np.datetime_as_string(np.asarray(days, dtype="int64").astype("datetime64[D]")).tolist()


def timestamps(seconds: np.ndarray) -> list[str]:
    """Epoch seconds (UTC) -> ``YYYY-MM-DDTHH:MM:SS+00:00`` strings."""
    text = np.datetime_as_string(np.asarray(seconds, dtype="int64").astype("datetime64[s]"),
                                 unit="s")
    return [value + "+00:00" for value in text.tolist()]


def money(cents: np.ndarray) -> list[str]:
    """Whole cents -> ``1234.50`` strings (never negative, always two decimals)."""
    values = np.asarray(cents, dtype="int64").tolist()
    return [f"{value // 100}.{value % 100:02d}" for value in values]


def integers(values: np.ndarray) -> list[str]:
    return [str(value) for value in np.asarray(values, dtype="int64").tolist()]
