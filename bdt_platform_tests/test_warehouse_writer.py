"""The warehouse writer against a real DuckDB file: partition replace, atomicity."""

import datetime as dt

import pyarrow as pa
import pytest

from bdt_platform.storage.warehouse import LOAD_SETTINGS, DuckDBWarehouse

M1, M2 = dt.date(2024, 1, 1), dt.date(2024, 2, 1)


def _rows(state, month, ids):
    return pa.table({"id": ids, "state": [state] * len(ids), "month": pa.array([month] * len(ids),
                                                                              pa.date32())})


def _ids(warehouse):
    frame = warehouse.query("SELECT state, month, id FROM raw.t ORDER BY ALL")
    return [(r.state, r.month.date() if hasattr(r.month, "date") else r.month, r.id)
            for r in frame.itertuples()]


def test_replace_is_idempotent_and_scoped(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["a", "b"]), [("PA", M1)])
    warehouse.replace_partitions("raw.t", _rows("NJ", M1, ["c"]), [("NJ", M1)])
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["a", "b"]), [("PA", M1)])
    assert len(_ids(warehouse)) == 3  # no duplicates on re-load
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["z"]), [("PA", M1)])
    assert [i for s, _, i in _ids(warehouse) if s == "PA"] == ["z"]  # replaced
    assert [i for s, _, i in _ids(warehouse) if s == "NJ"] == ["c"]  # untouched
    warehouse.replace_partitions("raw.t", _rows("PA", M1, [])[:0], [("PA", M1)])
    assert [s for s, _, _ in _ids(warehouse)] == ["NJ"]  # an empty partition empties it
    assert warehouse.partitions("raw.t") == {("NJ", M1)}


def test_failed_batch_leaves_tables_as_they_were(tmp_path):
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["a"]), [("PA", M1)])
    before = _ids(warehouse)
    with pytest.raises(RuntimeError):
        with warehouse.batch() as batch:
            batch.replace("raw.t", _rows("PA", M1, ["x", "y"]), [("PA", M1)])
            batch.replace("raw.t", _rows("PA", M2, ["q"]), [("PA", M2)])
            raise RuntimeError("load failed half-way")
    assert _ids(warehouse) == before


def test_a_batch_deletes_only_partitions_that_have_rows_and_replaces_its_own(tmp_path):
    """A batch deletes the partitions the table held when the batch began and those it wrote
    itself, and nothing else (a first load deletes nothing): replacing a partition twice in one
    batch keeps the second rows, and a partition loaded before the batch is replaced."""
    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["old"]), [("PA", M1)])
    with warehouse.batch() as batch:
        batch.replace("raw.t", _rows("NJ", M1, ["a", "b"]), [("NJ", M1)])
        batch.replace("raw.t", _rows("NJ", M1, ["c"]), [("NJ", M1)])  # the same batch again
        batch.replace("raw.t", _rows("PA", M1, ["new"]), [("PA", M1)])  # there before
        batch.replace("raw.u", _rows("PA", M2, ["u"]), [("PA", M2)])  # a new table
        batch.replace("raw.u", _rows("PA", M2, ["v"]), [("PA", M2)])
        batch.replace("raw.t", _rows("NY", M2, [])[:0], [("NY", M2)])  # nothing to delete
    assert _ids(warehouse) == [("NJ", M1, "c"), ("PA", M1, "new")]
    assert warehouse.query("SELECT id FROM raw.u")["id"].tolist() == ["v"]


def test_a_write_that_fails_in_the_writer_thread_fails_the_batch_and_rolls_it_back(tmp_path):
    """Replaces are written by the batch's writer thread while the caller goes on: one that
    fails there (a month that is not a date) raises from the batch - at the next replace or at
    its end - and nothing of the batch is committed, not even the replaces before it."""
    import duckdb

    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["a"]), [("PA", M1)])
    before = _ids(warehouse)
    # Another connection to the same database in this process keeps its settings: a batch
    # loads with its own (one DuckDB thread, rows written a row group at a time) and puts them
    # back, whichever way it ends.
    other = duckdb.connect(str(tmp_path / "w.duckdb"))
    other.execute("SET threads = 3")
    other.execute("SET write_buffer_row_group_count = 4")
    kept = {"threads": 3, "write_buffer_row_group_count": 4}

    def settings() -> dict:
        return {name: other.execute(f"SELECT current_setting('{name}')").fetchone()[0]
                for name in kept}
    broken = pa.table({"id": ["x"], "state": ["NJ"], "month": ["not a date"]})
    for later in ([], [("NY", M2)]):  # the error raised at the batch's end / at the next replace
        with pytest.raises(duckdb.ConversionException, match="not a date"):
            with warehouse.batch() as batch:
                batch.replace("raw.t", _rows("PA", M1, ["changed"]), [("PA", M1)])
                batch.replace("raw.t", _rows("PA", M2, ["new"]), [("PA", M2)])
                batch.replace("raw.t", broken, [("NJ", M1)])
                for state, month in later:
                    batch._writes[-1].exception()  # written (and failed) before the next one
                    batch.replace("raw.t", _rows(state, month, ["z"]), [(state, month)])
        assert _ids(warehouse) == before
        assert settings() == kept
    with warehouse.batch() as batch:  # the file is usable afterwards
        batch.replace("raw.t", _rows("PA", M2, ["new"]), [("PA", M2)])
        assert settings() == LOAD_SETTINGS == {"threads": 1, "write_buffer_row_group_count": 1}
    assert _ids(warehouse) == before + [("PA", M2, "new")]
    assert settings() == kept
    other.close()


def test_a_failed_batch_leaves_nothing_of_rows_already_written_to_the_file(tmp_path):
    """A load writes its rows to the database file a row group (122,880 rows) at a time, before
    it commits (``LOAD_SETTINGS``): a batch that fails after writing several row groups still
    leaves the tables exactly as they were, and the next batch loads the same rows in full."""
    import duckdb

    warehouse = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.replace_partitions("raw.t", _rows("PA", M1, ["a"]), [("PA", M1)])
    many = _rows("NY", M1, [f"id{number}" for number in range(300_000)])
    broken = pa.table({"id": ["x"], "state": ["NJ"], "month": ["not a date"]})
    with pytest.raises(duckdb.ConversionException, match="not a date"):
        with warehouse.batch() as batch:
            batch.replace("raw.t", many, [("NY", M1)])
            batch.replace("raw.t", broken, [("NJ", M1)])
    assert _ids(warehouse) == [("PA", M1, "a")]
    with warehouse.batch() as batch:
        batch.replace("raw.t", many, [("NY", M1)])
    counts = warehouse.query("SELECT state, count(*) AS n, count(DISTINCT id) AS ids FROM raw.t "
                             "GROUP BY state ORDER BY state")
    assert counts.values.tolist() == [["NY", 300_000, 300_000], ["PA", 1, 1]]
