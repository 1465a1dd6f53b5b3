"""The lake IO manager, twice: on a local folder and on GCS (gcp-storage-emulator over HTTP).

Round trips of DataFrames and Arrow tables, the readable per-partition layout, overwrite,
a multi-partition run written as one object per partition, range loads concatenated, and the
partner files archived beside them byte for byte.
"""


import datetime as dt
import gzip
import hashlib
import io
import uuid

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from upath import UPath

from bdt_platform.core import partitions as parts
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.lake_io import LakeIOManager

from .emulators import gcs_emulator  # noqa: F401 - fixture

M1, M2 = dt.date(2024, 1, 1), dt.date(2024, 2, 1)


@pytest.fixture(params=["local", "gcs"])
def lake(request, tmp_path):
    """``(root, storage_options)`` of an empty lake on the parametrized backend."""
    if request.param == "local":
        return str(tmp_path / "lake"), {}
    emulator = request.getfixturevalue("gcs_emulator")
    return f"gs://{emulator.bucket}/lake-{uuid.uuid4().hex[:8]}", emulator.storage_options()


def _io(lake) -> LakeIOManager:
    root, options = lake
    return LakeIOManager(root=root, storage_options=options)


def _path(lake, *segments) -> UPath:
    root, options = lake
    return UPath(root, **options).joinpath(*segments)


def _read(lake, *segments) -> pa.Table:
    return pq.read_table(io.BytesIO(_path(lake, *segments).read_bytes()))


def _sample() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["a", None, "c"],
        "count": pd.array([1, 2, 3], dtype="int64"),
        "amount": [1.5, float("nan"), 0.0],
        "flag": [True, False, True],
        "day": [dt.date(2024, 1, 5), dt.date(2024, 2, 29), None],
        "at": pd.to_datetime(["2024-01-05T10:00:00Z", "2024-03-01T00:00:00Z", None], utc=True),
    })


def _materialize(assets, lake, **kwargs):
    result = dg.materialize(assets, resources={"io_manager": _io(lake)}, **kwargs)
    assert result.success
    return result


def test_dataframe_and_arrow_round_trip(lake):
    seen = {}

    @dg.asset
    def frame() -> pd.DataFrame:
        return _sample()

    @dg.asset
    def table() -> pa.Table:
        return pa.Table.from_pandas(_sample(), preserve_index=False)

    @dg.asset
    def reader(frame: pd.DataFrame, table: pa.Table) -> None:
        seen["frame"], seen["table"] = frame, table

    _materialize([frame, table, reader], lake)
    pd.testing.assert_frame_equal(seen["frame"], _sample())
    assert isinstance(seen["table"], pa.Table)
    assert seen["table"].equals(pa.Table.from_pandas(_sample(), preserve_index=False))
    assert _read(lake, "frame.parquet").num_rows == 3  # plain Parquet, readable by any tool


def _report_asset(rows_for, key=("lake", "report")):
    @dg.asset(key=list(key), partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run())
    def report(context: dg.AssetExecutionContext) -> pd.DataFrame:
        frames = [rows_for(*parts.split_key(k)) for k in context.partition_keys]
        return pd.concat(frames, ignore_index=True)

    return report


def _rows(tag: str):
    def rows_for(state: str, month: dt.date) -> pd.DataFrame:
        if (state, month) == ("NJ", M2):
            return pd.DataFrame({"state": pd.Series([], dtype=object),
                                 "month": pd.Series([], dtype=object),
                                 "value": pd.Series([], dtype="int64"),
                                 "tag": pd.Series([], dtype=object)})
        n = 2 if state == "PA" else 1
        return pd.DataFrame({"state": [state] * n, "month": [month] * n,
                             "value": list(range(n)), "tag": [tag] * n})
    return rows_for


def test_one_readable_object_per_partition_and_overwrite(lake):
    first = _report_asset(_rows("first"))
    _materialize([first], lake, partition_key=parts.partition_key("PA", M1))
    _materialize([first], lake, partition_key=parts.partition_key("NJ", M1))
    table = _read(lake, "report", "month=2024-01", "state=PA.parquet")  # 'lake/' prefix dropped
    assert table.num_rows == 2 and set(table.column("tag").to_pylist()) == {"first"}

    second = _report_asset(_rows("second"))
    _materialize([second], lake, partition_key=parts.partition_key("PA", M1))
    again = _read(lake, "report", "month=2024-01", "state=PA.parquet")
    assert again.num_rows == 2 and set(again.column("tag").to_pylist()) == {"second"}  # replaced
    other = _read(lake, "report", "month=2024-01", "state=NJ.parquet")
    assert other.column("tag").to_pylist() == ["first"]  # untouched
    leftovers = [p.name for p in _path(lake, "report", "month=2024-01").iterdir()]
    assert sorted(leftovers) == ["state=NJ.parquet", "state=PA.parquet"]  # no temp files


def test_range_run_writes_each_partition_and_range_load_concatenates(lake):
    report = _report_asset(_rows("range"))
    seen = {}

    @dg.asset(partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run(),
              ins={"report": dg.AssetIn(key=["lake", "report"])})
    def as_frame(report: pd.DataFrame) -> None:
        seen["frame"] = report

    @dg.asset(partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run(),
              ins={"report": dg.AssetIn(key=["lake", "report"])})
    def as_table(report: pa.Table) -> None:
        seen["table"] = report

    @dg.asset(partitions_def=parts.state_month_partitions,
              backfill_policy=dg.BackfillPolicy.single_run(),
              ins={"report": dg.AssetIn(key=["lake", "report"])})
    def as_dict(report: dict) -> None:
        seen["dict"] = report

    # One run over a rectangle (NJ, PA are not adjacent: NJ..PA spans the states between).
    tags = parts.range_tags(["NJ", "PA"], [M1, M2])
    _materialize([report, as_frame, as_table, as_dict], lake, tags=tags)
    written = sorted(str(p.relative_to(_path(lake, "report")))
                     for p in _path(lake, "report").rglob("*.parquet"))
    states = parts.STATES[parts.STATES.index("NJ"):parts.STATES.index("PA") + 1]
    assert len(written) == 2 * len(states)  # one object per partition, empty ones included
    assert "month=2024-02/state=NJ.parquet" in written
    assert _read(lake, "report", "month=2024-02", "state=NJ.parquet").num_rows == 0

    expected = sum(2 if s == "PA" else (0 if (s, m) == ("NJ", M2) else 1)
                   for s in states for m in (M1, M2))
    assert len(seen["frame"]) == expected == seen["table"].num_rows
    assert set(seen["frame"]["state"]) == set(states)
    assert sorted(seen["frame"]["month"].unique()) == [M1, M2]
    # A reader that asks for a dict gets one object per partition instead.
    assert len(seen["dict"]) == 2 * len(states)
    assert sum(len(frame) for frame in seen["dict"].values()) == expected


def test_rows_outside_the_run_are_refused(lake):
    @dg.asset(key=["lake", "bad"], partitions_def=parts.state_month_partitions)
    def bad(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"state": ["WY"], "month": [M1], "value": [1]})

    with pytest.raises(dg.Failure, match="outside the run"):
        dg.materialize([bad], resources={"io_manager": _io(lake)},
                       tags=parts.range_tags(["NJ", "PA"], [M1, M1]))


def test_archived_partner_files_keep_their_bytes(lake):
    root, options = lake
    resource = LakeResource(root=root, storage_options=options)
    text = "record_id,ssn\r\n1,123-45-6789\r\n".encode() + bytes(range(256))
    data = gzip.compress(text)
    received = dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    archived = resource.archive("nudges", "PA", M1, "nudge_PA_202401_nudges.csv.gz", data,
                                received)
    assert archived.path == ("archive/nudges/month=2024-01/state=PA/"
                             f"20240203T040506Z_{hashlib.sha256(data).hexdigest()[:12]}_"
                             "nudge_PA_202401_nudges.csv.gz")
    again = resource.archive("nudges", "PA", M1, "nudge_PA_202401_nudges.csv.gz", data, received)
    assert again == archived  # idempotent
    assert resource.archived_files("nudges", "PA", M1) == [archived.path]
    back, raw = resource.read_archived(archived.path)
    assert raw == data and back.sha256 == hashlib.sha256(data).hexdigest()
    assert gzip.decompress(raw) == text
    where = resource.quarantine("mailvendor", "bad.csv", b"\x00\xffbad", {"rule": "x"})
    assert _path(lake, where).read_bytes() == b"\x00\xffbad"
    assert _path(lake, where + ".reason.json").exists()


def test_a_second_rejected_file_of_the_same_name_never_replaces_the_first(lake):
    root, options = lake
    resource = LakeResource(root=root, storage_options=options)
    name = "communitycare_PA_202401_eligibility.csv.gz"
    first = resource.quarantine("communitycare", name, b"first bad", {"rule": "one"})
    assert first == f"quarantine/communitycare/{name}"
    second = resource.quarantine("communitycare", name, b"second bad", {"rule": "two"})
    digest = hashlib.sha256(b"second bad").hexdigest()[:12]
    assert second == f"quarantine/communitycare/communitycare_PA_202401_eligibility.{digest}.csv.gz"
    assert _path(lake, first).read_bytes() == b"first bad"
    assert '"one"' in _path(lake, first + ".reason.json").read_text()
    assert _path(lake, second).read_bytes() == b"second bad"
    assert '"two"' in _path(lake, second + ".reason.json").read_text()
    # The same bytes again are the same quarantined file, not a third copy.
    assert resource.quarantine("communitycare", name, b"first bad", {"rule": "one"}) == first
    assert resource.quarantine("communitycare", name, b"second bad", {"rule": "two"}) == second
    assert sorted(p.name for p in _path(lake, "quarantine", "communitycare").iterdir()) == sorted(
        [name, name + ".reason.json", second.rsplit("/", 1)[1],
         second.rsplit("/", 1)[1] + ".reason.json"])


def test_a_worker_process_writes_archive_copies_the_run_reads_back(lake):
    """The feed loaders have their worker processes write the archive copies
    (``archive.store_many``): a worker opens the lake itself, from the root and its fsspec
    options (GCS over HTTP here too), and what it wrote reads back as ``archive`` would have
    written it."""
    from bdt_platform.feeds import workers
    from bdt_platform.storage import archive

    root, options = lake
    received = dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
    files = [(f"mail_PA_2024{m:02d}_mailreturns.csv", f"mail_piece_id\r\nM-{m}\r\n".encode())
             for m in (1, 2)]
    entries = [(archive.archived_file("mailreturns", "PA", M1, name, data, received), data)
               for name, data in files]
    with workers.chunk_runner(1) as runner:
        assert runner.submit(archive.store_many, root, options, entries).result() is None
    resource = LakeResource(root=root, storage_options=options)
    assert resource.archived_files("mailreturns", "PA", M1) == sorted(e.path for e, _ in entries)
    for stored, data in entries:
        assert resource.read_archived(stored.path) == (stored, data)
        assert resource.archive("mailreturns", "PA", M1, stored.filename, data,
                                received) == stored
