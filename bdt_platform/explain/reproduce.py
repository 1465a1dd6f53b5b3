"""Reproduce a past number: rebuild one report partition as it was at a given time.

The files each feed had loaded at that time are read back from the lake's archive (by the
archive path their materialization recorded), validated and tokenized again, loaded into a
scratch DuckDB warehouse, and the dbt models and the report are rebuilt there for that one
partition. The result is compared with the numbers the report recorded at the time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pyarrow as pa
from dagster_dbt import DbtCliResource

from bdt_platform.core import partitions as parts
from bdt_platform.explain import history
from bdt_platform.explain.engine import METRICS, ExplainError, resolve_table
from bdt_platform.feeds import csv_reader, decoding, typed_table, validation
from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.reports.outcomes import compute_outcomes
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import DuckDBWarehouse
from bdt_platform.warehouse.assets import dbt_vars


@dataclass
class Reproduction:
    partition: str
    recorded: history.Snapshot
    inputs: dict[str, str]  # feed -> archived file used
    recorded_values: dict[str, float | None]
    rebuilt_values: dict[str, float | None]
    code_notes: list[str]

    @property
    def matches(self) -> bool:
        for name in METRICS:
            a, b = self.recorded_values.get(name), self.rebuilt_values.get(name)
            if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6):
                return False
        return True

    def to_markdown(self) -> str:
        lines = [f"## {self.partition} as of the materialization of run {self.recorded.run_id[:8]}",
                 "", "Rebuilt from these archived inputs:", ""]
        lines += [f"- raw/{feed}: `{path}`" for feed, path in sorted(self.inputs.items())]
        lines += ["", "| metric | recorded then | rebuilt now | equal |", "|---|---|---|---|"]
        for name in METRICS:
            a, b = self.recorded_values.get(name), self.rebuilt_values.get(name)
            same = (a is None and b is None) or (a is not None and b is not None
                                                 and abs(a - b) <= 1e-6)
            lines.append(f"| {name} | {a} | {b} | {'yes' if same else 'NO'} |")
        lines += [""] + [f"- {note}" for note in self.code_notes]
        lines.append("")
        lines.append("Reproduced exactly." if self.matches else
                     "Not reproduced: see the code notes above.")
        return "\n".join(lines) + "\n"


def reproduce(instance: dg.DagsterInstance, asset_graph, lake: LakeResource,
              dbt: DbtCliResource, pii_key: str, table: str, state: str, month,
              when: float) -> Reproduction:
    key = resolve_table(table)
    partition = parts.partition_key(state, month)
    recorded = history.as_of(instance, key, partition, when)
    if recorded is None:
        raise ExplainError(f"{table} partition {partition} had not been materialized by then")
    inputs: dict[str, str] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bdt-asof-") as scratch:
        warehouse = DuckDBWarehouse(path=str(Path(scratch) / "asof.duckdb"))
        for upstream in history.lineage(asset_graph, key):
            if upstream.path[0] != "raw":
                continue
            feed = upstream.path[-1]
            then = history.as_of(instance, upstream, partition, recorded.timestamp)
            spec = ALL_SPECS[feed]
            tables = []
            # Every file the partition held rows of then (one per partner).
            for file in (then.sources.values() if then is not None else []):
                if not file.get("archive_path"):
                    continue
                _, data = lake.read_archived(file["archive_path"])
                frame = csv_reader.read_text_frame(decoding.decode(data, file["file"]), spec)
                validation.validate(frame, spec, state, month)
                tables.append(typed_table.to_table(frame, spec, state=state, month=month,
                                                   source_file=_source_name(feed, file["file"]),
                                                   pii_key=pii_key))
                inputs[feed if len(then.sources) == 1 else f"{feed} ({file['partner']})"] = \
                    file["archive_path"]
            if not tables:
                frame = csv_reader.read_text_frame(",".join(spec.input_columns) + "\n", spec)
                tables.append(typed_table.to_table(frame, spec, state=state, month=month,
                                                   source_file="", pii_key=pii_key))
            table_rows = pa.concat_tables(tables)
            warehouse.replace_partitions(spec.table, table_rows, [(state, month)])
        _run_dbt(dbt, warehouse.path, [partition])
        rebuilt = compute_outcomes(warehouse, [partition], Path(dbt.project_dir))
    rebuilt_values = ({name: _float(rebuilt.iloc[0][name]) for name in METRICS}
                      if len(rebuilt) else {})
    recorded_values = {name: _float(recorded.metadata.get(name)) for name in METRICS}
    for upstream in history.lineage(asset_graph, key):
        node = asset_graph.get(upstream)
        if upstream.path[0] == "raw" or not node.is_materializable:
            continue
        then = history.as_of(instance, upstream, partition if node.partitions_def else None,
                             recorded.timestamp)
        if then and then.code_version and node.code_version and then.code_version != node.code_version:
            notes.append(f"{upstream.to_user_string()} code changed since then "
                         f"({then.code_version[:12]} -> {node.code_version[:12]}); rebuilt with "
                         "today's code")
    if not notes:
        notes.append("no model's code changed since then")
    return Reproduction(partition, recorded, inputs, recorded_values, rebuilt_values, notes)


def _source_name(feed: str, filename: str) -> str:
    return f"casemgmt.{feed}" if filename.startswith("casemgmt_") else filename


def _float(value) -> float | None:
    try:
        if value is None or value != value:
            return None
        return float(value)
    except (TypeError, ValueError):
        return None


def _run_dbt(dbt: DbtCliResource, warehouse_path: str, partition_keys: list[str]) -> None:
    """dbt run (models only) for the partition against the scratch warehouse."""
    previous = os.environ.get("BDT_WAREHOUSE_PATH")
    os.environ["BDT_WAREHOUSE_PATH"] = warehouse_path
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dbt.cli(["run", "--vars", json.dumps(dbt_vars(partition_keys))],
                    manifest=Path(dbt.project_dir) / "target" / "manifest.json",
                    raise_on_error=True).wait()
    finally:
        if previous is None:
            os.environ.pop("BDT_WAREHOUSE_PATH", None)
        else:
            os.environ["BDT_WAREHOUSE_PATH"] = previous
