"""``provenance.join_version``: the version of what other partitions read of a raw partition
(``FeedSpec.join_columns``), which decides how far a case-management change reaches
(``warehouse.staleness.WITHIN``)."""

from __future__ import annotations

import pyarrow as pa

from bdt_platform.feeds.provenance import join_version
from bdt_platform.feeds.specs import ALL_SPECS

COLUMNS = ALL_SPECS["clients"].join_columns


def _clients(rows: list[tuple[str, str, str]]) -> pa.Table:
    ids, tokens, updated = zip(*rows)
    return pa.table({"client_id": ids, "person_token": tokens, "updated_at": updated})


def test_the_version_is_of_the_join_columns_as_a_set():
    table = _clients([("CL-1", "tok-a", "2024-01-02"), ("CL-2", "tok-b", "2024-01-05")])
    same = join_version(table, COLUMNS)
    # Rows in another order, another updated_at: what other partitions read is unchanged.
    assert join_version(_clients([("CL-2", "tok-b", "2024-03-01"),
                                  ("CL-1", "tok-a", "2024-01-02")]), COLUMNS) == same
    # A client's person token, a client more or less, an id: changed.
    assert join_version(_clients([("CL-1", "tok-a", "2024-01-02"),
                                  ("CL-2", "tok-c", "2024-01-05")]), COLUMNS) != same
    assert join_version(_clients([("CL-1", "tok-a", "2024-01-02")]), COLUMNS) != same
    assert join_version(_clients([("CL-1", "tok-a", "2024-01-02"),
                                  ("CL-3", "tok-b", "2024-01-05")]), COLUMNS) != same


def test_only_the_case_management_feeds_joined_by_id_have_join_columns():
    assert {name for name, spec in ALL_SPECS.items() if spec.join_columns} == \
        {"clients", "applications"}
    for spec in ALL_SPECS.values():
        names = spec.arrow_schema.names
        assert set(spec.join_columns) <= set(names), spec.name
