"""Reading provenance back from the Dagster instance: materializations of one partition's lineage.

Everything here is indexed look-ups by asset key, partition and time (``fetch_materializations``
with ``before_timestamp``), so explaining one partition reads only that partition's lineage,
however many partitions the instance holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from bdt_platform.feeds.provenance import sources_of


@dataclass(frozen=True)
class Snapshot:
    """One materialization, as explain needs it."""

    key: dg.AssetKey
    partition: str | None
    storage_id: int
    timestamp: float
    run_id: str
    metadata: dict = field(default_factory=dict)
    code_version: str | None = None

    @property
    def rows(self) -> int | None:
        value = self.metadata.get("dagster/row_count")
        return int(value) if value is not None else None

    @property
    def sources(self) -> dict[str, dict]:
        """Per partner, the file this (feed) partition held rows of (``provenance.sources_of``)."""
        return {source["partner"]: source for source in sources_of(self.metadata)}


def _value(entry):
    return entry.value if hasattr(entry, "value") else entry


def snapshot(record: dg.EventLogRecord) -> Snapshot:
    materialization = record.asset_materialization
    metadata = {name: _value(entry) for name, entry in materialization.metadata.items()}
    tags = materialization.tags or {}
    return Snapshot(
        key=materialization.asset_key,
        partition=materialization.partition,
        storage_id=record.storage_id,
        timestamp=record.timestamp,
        run_id=record.run_id,
        metadata=metadata,
        code_version=tags.get("dagster/code_version") or metadata.get("code_version"),
    )


def history(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None,
            limit: int = 50) -> list[Snapshot]:
    """Newest first."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None),
        limit=limit, ascending=False).records
    return [snapshot(record) for record in records]


def as_of(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None,
          timestamp: float) -> Snapshot | None:
    """The materialization that was current at ``timestamp`` (None if there was none yet)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition] if partition else None,
                              before_timestamp=timestamp + 1e-6),
        limit=1, ascending=False).records
    return snapshot(records[0]) if records else None


def lineage(asset_graph, key: dg.AssetKey) -> list[dg.AssetKey]:
    """Every asset upstream of ``key``, nearest first (breadth-first down to the feeds)."""
    seen: list[dg.AssetKey] = []
    frontier = [key]
    while frontier:
        nxt = []
        for current in frontier:
            for parent in sorted(asset_graph.get(current).parent_keys, key=str):
                if parent not in seen:
                    seen.append(parent)
                    nxt.append(parent)
        frontier = nxt
    return seen


def check_failures_between(instance: dg.DagsterInstance, keys: Iterable[dg.AssetKey],
                           partition: str, start: float, end: float) -> list[dict]:
    """Contract-check rejections of files for ``partition`` recorded between two times."""
    found = []
    for key in keys:
        check_key = dg.AssetCheckKey(key, "contract")
        try:
            executions = instance.event_log_storage.get_asset_check_execution_history(
                check_key, limit=50)
        except Exception:  # an asset without that check
            continue
        for execution in executions:
            event = execution.event
            # The evaluation's own time: the execution row's create_timestamp is when the check
            # was planned (run start), and SQLite stores it to the second only.
            if event is None or not (start < event.timestamp <= end):
                continue
            evaluation = event.dagster_event.event_specific_data
            if getattr(evaluation, "passed", True):
                continue
            rejected = evaluation.metadata.get("rejected")
            for item in (rejected.value if rejected is not None else []):
                if item.get("partition") == partition:
                    found.append({"asset": key.to_user_string(), **item,
                                  "at": event.timestamp})
    return found
