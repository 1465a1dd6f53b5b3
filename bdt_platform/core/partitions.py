"""States, months and the ``state x month`` partitions every feed and report shares.

Dagster joins multi-partition keys in dimension-name order, so a key reads ``2024-03-01|PA``.
The Dagster partitions definitions (``state_month_partitions``, ...) are built on first use, so
the worker processes that parse files use the keys and states here without importing Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

STATES: tuple[str, ...] = (
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL",
    "IN", "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE",
    "NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT",
    "VA", "VT", "WA", "WI", "WV", "WY",
)
FIRST_MONTH = "2023-01-01"

_DEFINITIONS: dict[str, object] = {}


def __getattr__(name: str):
    """``month_partitions``, ``state_partitions`` and ``state_month_partitions``: built (and
    Dagster imported) the first time one is asked for, then the same objects every time."""
    if name not in ("month_partitions", "state_partitions", "state_month_partitions"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _DEFINITIONS:
        import dagster as dg

        month = dg.MonthlyPartitionsDefinition(start_date=FIRST_MONTH, end_offset=1)
        state = dg.StaticPartitionsDefinition(list(STATES))
        _DEFINITIONS.update(month_partitions=month, state_partitions=state,
                            state_month_partitions=dg.MultiPartitionsDefinition(
                                {"month": month, "state": state}))
    return _DEFINITIONS[name]


def partition_key(state: str, month: dt.date | str) -> str:
    """``('PA', 2024-03-xx)`` -> ``'2024-03-01|PA'``."""
    return f"{month_start(month).isoformat()}|{state}"


def split_key(key: str) -> tuple[str, dt.date]:
    """``'2024-03-01|PA'`` -> ``('PA', date(2024, 3, 1))``."""
    month, state = key.split("|")
    return state, dt.date.fromisoformat(month)


def month_start(value: dt.date | str) -> dt.date:
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:7] + "-01")
    return value.replace(day=1)


def parse_month(text: str) -> dt.date:
    """``2024-03`` or ``2024-03-01`` or ``202403`` -> ``date(2024, 3, 1)``."""
    text = text.strip()
    if len(text) == 6 and text.isdigit():
        text = f"{text[:4]}-{text[4:]}"
    try:
        return dt.date.fromisoformat(text[:7] + "-01")
    except ValueError:
        raise ValueError(f"not a month: {text!r} (expected YYYY-MM)") from None


def add_months(month: dt.date, n: int) -> dt.date:
    index = month.year * 12 + month.month - 1 + n
    return dt.date(index // 12, index % 12 + 1, 1)


def month_range(spec: str) -> list[dt.date]:
    """``2024-01..2024-06`` (inclusive) or ``2024-03`` -> list of first-of-month dates."""
    if ".." in spec:
        start_text, end_text = spec.split("..", 1)
        start, end = parse_month(start_text), parse_month(end_text)
        if end < start:
            raise ValueError(f"month range {spec!r} ends before it starts")
        months, month = [], start
        while month <= end:
            months.append(month)
            month = add_months(month, 1)
        return months
    return [parse_month(part) for part in spec.split(",") if part.strip()]


def parse_states(spec: str) -> list[str]:
    """``PA,NJ`` or ``ALL`` -> state codes in canonical order; unknown codes raise."""
    if spec.strip().upper() == "ALL":
        return list(STATES)
    states = [s.strip().upper() for s in spec.split(",") if s.strip()]
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ValueError(f"unknown state code(s): {', '.join(unknown)}")
    return sorted(set(states), key=STATES.index)


def rectangles(keys: Iterable[tuple[str, dt.date]]) -> list[tuple[list[str], list[dt.date]]]:
    """Cover a set of (state, month) pairs exactly with few rectangles.

    Each rectangle is a contiguous run of states (canonical order) x a contiguous run of months,
    which is what a single-run backfill over a ``MultiPartitionsDefinition`` can execute in one
    Dagster run. Months with the same set of states are merged when adjacent.
    """
    by_month: dict[dt.date, set[str]] = {}
    for state, month in keys:
        by_month.setdefault(month_start(month), set()).add(state)
    result: list[tuple[list[str], list[dt.date]]] = []
    months = sorted(by_month)
    i = 0
    while i < len(months):
        states = by_month[months[i]]
        j = i
        while (j + 1 < len(months) and by_month[months[j + 1]] == states
               and months[j + 1] == add_months(months[j], 1)):
            j += 1
        for run in _contiguous_state_runs(states):
            result.append((run, months[i : j + 1]))
        i = j + 1
    return result


def _contiguous_state_runs(states: set[str]) -> list[list[str]]:
    ordered = sorted(states, key=STATES.index)
    runs: list[list[str]] = []
    for state in ordered:
        if runs and STATES.index(state) == STATES.index(runs[-1][-1]) + 1:
            runs[-1].append(state)
        else:
            runs.append([state])
    return runs


def range_tags(states: list[str], months: list[dt.date]) -> dict[str, str]:
    """Run tags for one rectangle, the in-process route to a single-run backfill."""
    return {
        "dagster/asset_partition_range_start": partition_key(states[0], months[0]),
        "dagster/asset_partition_range_end": partition_key(states[-1], months[-1]),
    }


def bounding_rectangle(keys: Iterable[tuple[str, dt.date]]) -> list[tuple[list[str], list[dt.date]]]:
    """The one rectangle (states range x months range) that contains every pair: for runs whose
    assets skip, or harmlessly empty, the partitions in it that were not asked for."""
    pairs = list(keys)
    if not pairs:
        return []
    indexes = sorted({STATES.index(s) for s, _ in pairs})
    months = sorted({month_start(m) for _, m in pairs})
    span, month = [], months[0]
    while month <= months[-1]:
        span.append(month)
        month = add_months(month, 1)
    return [(list(STATES[indexes[0]: indexes[-1] + 1]), span)]
