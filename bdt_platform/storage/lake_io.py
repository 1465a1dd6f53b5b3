"""The lake IO manager: pandas DataFrames and Arrow tables as Parquet, one object per partition.

One implementation for every backend (Dagster's ``UPathIOManager`` over fsspec): the root is a
local folder (embedded default) or ``gs://bucket/lake`` (prod, through gcsfs). Layout, readable
from a notebook or ``gsutil ls``::

    <lake root>/<asset path>/month=YYYY-MM/state=XX.parquet      (state x month partitions)
    <lake root>/<asset path>/<partition key>.parquet             (one-dimensional partitions)
    <lake root>/<asset path>.parquet                             (unpartitioned)

where ``<asset path>`` is the asset key's path without a leading ``lake`` (``lake/outcomes_report``
-> ``outcomes_report``), because the root already is the lake. Partner files are archived beside
these by :class:`~bdt_platform.storage.lake.LakeResource` (``archive/...``), byte for byte.

- The output's type annotation picks the in-memory type: ``pd.DataFrame`` or ``pa.Table``.
- A run over many partitions (a single-run backfill rectangle) writes one object per partition:
  the rows are split on the columns named like the partition dimensions (``state``, ``month``).
  A partition of the run without rows gets an empty file with the schema, so a re-run that now
  yields nothing replaces the old rows, and a range load never misses a file.
- Loading a range of partitions returns their concatenation (a dict only when the input asks for
  ``dict``).
- Each write replaces its object whole: on GCS an object write is atomic; locally the file is
  written beside the target and renamed over it.
"""

from __future__ import annotations

import uuid
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster._core.storage.upath_io_manager import is_dict_type
from upath import UPath


def _is_monthly(partitions_def: dg.PartitionsDefinition) -> bool:
    if isinstance(partitions_def, dg.MonthlyPartitionsDefinition):
        return True
    cron = getattr(partitions_def, "cron_schedule", "") or ""
    return isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) and (
        cron.split()[2:] == ["1", "*", "*"])


def _dimensions(partitions_def) -> list[tuple[str, dg.PartitionsDefinition]]:
    """``(name, definition)`` of each dimension, in the order Dagster joins them (by name)."""
    if isinstance(partitions_def, dg.MultiPartitionsDefinition):
        return sorted(((d.name, d.partitions_def) for d in partitions_def.partitions_defs),
                      key=lambda item: item[0])
    return []


def _segment_value(partitions_def: dg.PartitionsDefinition, value: str) -> str:
    """How a dimension value reads in a path: months as ``YYYY-MM``, the rest verbatim."""
    return value[:7] if _is_monthly(partitions_def) else value


def _column_key(partitions_def: dg.PartitionsDefinition, values: pd.Series) -> pd.Series:
    """Column values -> that dimension's partition key strings (dates to the key's format)."""
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return pd.to_datetime(values).dt.strftime(partitions_def.fmt)
    return values.astype(str)


class LakeParquetIOManager(dg.UPathIOManager):
    """Parquet on any fsspec filesystem; see the module docstring for the layout."""

    extension = ".parquet"

    # -- paths ---------------------------------------------------------------------------------

    def get_asset_relative_path(self, context) -> UPath:
        path = list(context.asset_key.path)
        if len(path) > 1 and path[0] == "lake":
            path = path[1:]
        return UPath(*path)

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        dimensions = _dimensions(context.asset_partitions_def)
        if not dimensions:
            return self.make_safe_partition_path(path, partition)
        values = partition.split("/")
        return path.joinpath(*(f"{name}={_segment_value(pdef, value)}"
                               for (name, pdef), value in zip(dimensions, values)))

    # -- reading and writing one object ----------------------------------------------------------

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        table = _as_table(obj)
        if path.protocol in ("", "file", "local"):
            # Write beside the target, then rename over it: readers never see half a file.
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
            with partial.open("wb") as handle:
                pq.write_table(table, handle)
            partial.replace(path)
        else:
            with path.open("wb") as handle:  # an object store replaces the object whole
                pq.write_table(table, handle)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        with path.open("rb") as handle:
            table = pq.read_table(handle)
        return table if _wants_arrow(context) else table.to_pandas()

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict:
        return {} if obj is None else {"dagster/row_count": dg.MetadataValue.int(len(obj))}

    # -- many partitions at once ------------------------------------------------------------------

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if not context.has_asset_partitions or len(context.asset_partition_keys) <= 1:
            super().handle_output(context, obj)
            return
        paths = self._get_paths_for_partitions(context)
        pieces = _split_by_partition(context.asset_partitions_def, _as_table(obj), list(paths))
        for key, path in paths.items():
            self.make_directory(path.parent)
            self.dump_to_path(context, pieces[key], path)
        context.add_output_metadata({
            "path": dg.MetadataValue.path(str(self._get_path_without_extension(context))),
            "partitions_written": len(paths),
            "dagster/row_count": dg.MetadataValue.int(len(obj)),
        })

    def load_input(self, context: dg.InputContext) -> Any:
        loaded = super().load_input(context)
        if not isinstance(loaded, dict) or is_dict_type(context.dagster_type.typing_type):
            return loaded
        parts = list(loaded.values())  # in partition-key order
        if _wants_arrow(context):
            return (pa.concat_tables(parts, promote_options="default") if parts
                    else pa.table({}))
        non_empty = [part for part in parts if len(part)] or parts[:1]
        return pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame()


def _wants_arrow(context: dg.InputContext) -> bool:
    return context.dagster_type.typing_type is pa.Table


def _as_table(obj: Any) -> pa.Table:
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pd.DataFrame):
        return pa.Table.from_pandas(obj, preserve_index=False)
    raise TypeError(f"the lake IO manager stores pandas DataFrames and pyarrow Tables, not "
                    f"{type(obj).__name__}")


def _split_by_partition(partitions_def, table: pa.Table, keys: list) -> dict:
    """The rows of each partition key in ``keys`` (multi-partition keys, by column values)."""
    dimensions = _dimensions(partitions_def)
    missing = [name for name, _ in dimensions if name not in table.column_names]
    if not dimensions or missing:
        raise dg.Failure(
            "a run over several partitions must return rows that name their partition: "
            f"missing column(s) {', '.join(missing) or '(one-dimensional partitions)'}")
    frame = table.select([name for name, _ in dimensions]).to_pandas()
    row_keys = None
    for name, pdef in dimensions:
        column = _column_key(pdef, frame[name])
        row_keys = column if row_keys is None else row_keys + "|" + column
    wanted = {str(key): key for key in keys}
    outside = sorted(set(row_keys) - set(wanted))
    if outside:
        raise dg.Failure(f"rows for partitions outside the run: {', '.join(outside[:5])}")
    indices = pd.Series(range(len(row_keys))).groupby(row_keys.to_numpy()).apply(list).to_dict()
    return {key: table.take(pa.array(indices.get(text, []), pa.int64()))
            for text, key in wanted.items()}


class LakeIOManager(dg.ConfigurableIOManagerFactory):
    """Parquet in the lake (``lake_io_manager``): a local folder or ``gs://bucket/lake``."""

    root: str
    # fsspec options for the root's filesystem (gcsfs ``endpoint_url``/``token`` for an emulator).
    storage_options: dict[str, str] = {}

    def create_io_manager(self, context) -> LakeParquetIOManager:
        return LakeParquetIOManager(base_path=UPath(self.root, **self.storage_options))
