import datetime as dt
import itertools
import random

import pytest

from bdt_platform.core import partitions as parts


def test_keys_read_month_then_state():
    assert parts.partition_key("PA", dt.date(2024, 3, 17)) == "2024-03-01|PA"
    assert parts.split_key("2024-03-01|PA") == ("PA", dt.date(2024, 3, 1))
    keys = parts.state_month_partitions.get_partition_keys()
    assert "2023-01-01|AK" in keys and len(parts.STATES) == 51


def test_month_range_and_states():
    assert parts.month_range("2023-11..2024-02") == [
        dt.date(2023, 11, 1), dt.date(2023, 12, 1), dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    assert parts.parse_states("pa,NJ") == ["NJ", "PA"]
    assert len(parts.parse_states("ALL")) == 51
    with pytest.raises(ValueError, match="ZZ"):
        parts.parse_states("PA,ZZ")
    with pytest.raises(ValueError):
        parts.month_range("2024-05..2024-01")


def _cells(rectangles):
    return [(s, m) for states, months in rectangles for s in states for m in months]


@pytest.mark.parametrize("seed", range(25))
def test_rectangles_cover_exactly_once(seed):
    rng = random.Random(seed)
    months = parts.month_range("2024-01..2024-12")
    pairs = {(s, m) for s, m in itertools.product(rng.sample(parts.STATES, 8), months)
             if rng.random() < 0.7}
    cells = _cells(parts.rectangles(pairs))
    assert sorted(cells) == sorted(pairs)  # exact: nothing missing, nothing extra, no repeats
    for states, _ in parts.rectangles(pairs):
        indexes = [parts.STATES.index(s) for s in states]
        assert indexes == list(range(indexes[0], indexes[0] + len(indexes)))


def test_full_grid_is_one_rectangle():
    months = parts.month_range("2024-01..2024-12")
    pairs = [(s, m) for s in parts.STATES for m in months]
    assert parts.rectangles(pairs) == [(list(parts.STATES), months)]


def test_bounding_rectangle_spans_states_and_months():
    pairs = [("NJ", dt.date(2024, 1, 1)), ("PA", dt.date(2024, 3, 1))]
    [(states, months)] = parts.bounding_rectangle(pairs)
    assert states[0] == "NJ" and states[-1] == "PA" and "NY" in states
    assert months == parts.month_range("2024-01..2024-03")
    assert parts.bounding_rectangle([]) == []
