"""Why did a number move? Compare two materializations of a report partition.

1. every metric before -> after;
2. the upstream assets (lineage from the report down to the feeds) re-materialized in between,
   with row-count, source-file, code-version and check changes;
3. for each changed metric, the records that entered or left the count (from the report's
   ledgers), grouped by cause: a re-sent file, a late file, a code change - with counts that add
   up to the metric's change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.explain import history
from bdt_platform.explain.sources import METRIC_SOURCES, source_records
from bdt_platform.reports.ledger import read_ledger
from bdt_platform.storage.lake import LakeResource

REPORT_TABLES = {"reports.outcomes": dg.AssetKey(["reports", "outcomes"])}
METRICS = ["pieces_mailed", "people_nudged", "calls", "applications", "approvals",
           "benefit_usd_monthly", "approval_rate"]
MAX_LISTED = 20


class ExplainError(ValueError):
    """Unknown table or partition, or not enough history: a one-line reason (exit 2)."""


def resolve_table(name: str) -> dg.AssetKey:
    if name in REPORT_TABLES:
        return REPORT_TABLES[name]
    for table, key in REPORT_TABLES.items():
        if name in (key.to_user_string(), key.to_string()):
            return key
    raise ExplainError(f"unknown table {name!r}; known report tables: {', '.join(REPORT_TABLES)}")


def parse_when(text: str | None) -> float | None:
    """ISO date/time (UTC when no offset) or a run id prefix is resolved by the caller."""
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise ExplainError(f"not a time: {text!r} (use ISO 8601, e.g. 2024-05-01T12:00)") from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


@dataclass
class MetricChange:
    name: str
    before: float | None
    after: float | None

    @property
    def changed(self) -> bool:
        if self.before is None or self.after is None:
            return self.before != self.after
        return abs(self.after - self.before) > 1e-9

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        if self.delta is None or not self.before:
            return None
        return self.delta / self.before


@dataclass
class UpstreamChange:
    key: dg.AssetKey
    before: history.Snapshot | None
    after: history.Snapshot | None

    @property
    def rows_before(self):
        return self.before.rows if self.before else None

    @property
    def rows_after(self):
        return self.after.rows if self.after else None

    @property
    def file_changes(self) -> list[tuple[str, dict | None, dict | None]]:
        """Per partner whose file changed in between: ``(partner, file before, file after)``
        (None: that partner had no file in the partition then / has none now)."""
        before = self.before.sources if self.before else {}
        after = self.after.sources if self.after else {}
        return [(partner, before.get(partner), after.get(partner))
                for partner in sorted(set(before) | set(after))
                if (before.get(partner) or {}).get("sha256")
                != (after.get(partner) or {}).get("sha256")]

    @property
    def source_changed(self) -> bool:
        return bool(self.file_changes)

    @property
    def code_changed(self) -> bool:
        return bool(self.before and self.after and self.before.code_version
                    and self.after.code_version and self.before.code_version != self.after.code_version)


@dataclass
class Cause:
    label: str
    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    amount: float = 0.0  # net contribution to the metric


@dataclass
class RowChanges:
    metric: str
    causes: list[Cause]
    total: float  # the metric's change that the causes add up to
    note: str | None = None


@dataclass
class Explanation:
    table: str
    key: dg.AssetKey
    partition: str
    before: history.Snapshot
    after: history.Snapshot
    metrics: list[MetricChange]
    upstream: list[UpstreamChange]
    rejected_files: list[dict]
    rows: list[RowChanges]


def _metric_value(snapshot: history.Snapshot, name: str) -> float | None:
    value = snapshot.metadata.get(name)
    return None if value is None else float(value)


def choose_pair(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str,
                before: float | None, after: float | None
                ) -> tuple[history.Snapshot, history.Snapshot]:
    snapshots = history.history(instance, key, partition)
    if not snapshots:
        raise ExplainError(f"{key.to_user_string()} partition {partition} was never materialized")
    if after is not None:
        snapshots = [s for s in snapshots if s.timestamp <= after]
        if not snapshots:
            raise ExplainError(f"no materialization of {partition} at or before --after")
    newer = snapshots[0]
    older = [s for s in snapshots[1:] if before is None or s.timestamp <= before]
    if not older:
        raise ExplainError(f"{key.to_user_string()} partition {partition} has only one "
                           "materialization in that window: nothing to compare")
    return older[0], newer


def explain(instance: dg.DagsterInstance, asset_graph, lake: LakeResource, table: str,
            state: str, month: dt.date, metric: str | None = None, before: float | None = None,
            after: float | None = None) -> Explanation:
    key = resolve_table(table)
    if state not in parts.STATES:
        raise ExplainError(f"unknown state {state!r}")
    if metric is not None and metric not in METRICS:
        raise ExplainError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
    partition = parts.partition_key(state, month)
    old, new = choose_pair(instance, key, partition, before, after)

    metrics = [MetricChange(name, _metric_value(old, name), _metric_value(new, name))
               for name in METRICS]

    upstream = []
    for parent in history.lineage(asset_graph, key):
        node = asset_graph.get(parent)
        if not node.is_materializable:
            continue
        scoped = partition if node.partitions_def is not None else None
        was = history.as_of(instance, parent, scoped, old.timestamp)
        now = history.as_of(instance, parent, scoped, new.timestamp)
        if now is not None and (was is None or was.storage_id != now.storage_id):
            upstream.append(UpstreamChange(parent, was, now))
    feeds = [k for k in history.lineage(asset_graph, key) if k.path[0] == "raw"]
    rejected = history.check_failures_between(instance, feeds, partition, old.timestamp,
                                              new.timestamp)

    wanted = [m for m in metrics if m.changed and m.name in METRIC_SOURCES
              and (metric is None or m.name == metric)]
    rows = [_row_changes(lake, change.name, old, new, upstream) for change in wanted]
    return Explanation(table, key, partition, old, new, metrics, upstream, rejected, rows)


def _file_label(partner: str, was: dict | None, now: dict | None) -> str:
    """What happened to one partner's file of a partition, as a cause names it."""
    if now is None:
        return f"partner {partner}'s file {was['file']} no longer loaded"
    if was is None:
        return (f"late file {now['file']} from partner {partner} (no earlier file of {partner} "
                "for this partition)")
    return (f"re-sent file {now['file']} from partner {partner} (sha256 {now['sha256'][:12]}) "
            f"replacing {was['file']} (sha256 {was['sha256'][:12]})")


def _row_changes(lake: LakeResource, metric: str, old: history.Snapshot, new: history.Snapshot,
                 upstream: list[UpstreamChange]) -> RowChanges:
    if not old.metadata.get("ledger_path") or not new.metadata.get("ledger_path"):
        return RowChanges(metric, [], 0.0, note="no record ledger was kept for one of the two "
                          "materializations, so record-level changes cannot be listed")
    before = read_ledger(lake, old.metadata.get("ledger_path"))
    after = read_ledger(lake, new.metadata.get("ledger_path"))
    before = before[before["metric"] == metric].set_index("record_id")["amount"]
    after = after[after["metric"] == metric].set_index("record_id")["amount"]
    entered = sorted(set(after.index) - set(before.index))
    left = sorted(set(before.index) - set(after.index))
    changed_amount = sorted(i for i in set(after.index) & set(before.index)
                            if abs(after[i] - before[i]) > 1e-9)

    feed_key = dg.AssetKey(["raw", METRIC_SOURCES[metric].feed])
    feed_change = next((u for u in upstream if u.key == feed_key and u.source_changed), None)
    causes: list[Cause] = []
    unexplained_entered, unexplained_left = list(entered), list(left)
    # One cause per partner whose file changed: the records its new file brought in, and those
    # its old file had that are gone.
    for partner, was, now in (feed_change.file_changes if feed_change is not None else []):
        new_ids = source_records(lake, metric, now)
        old_ids = source_records(lake, metric, was)
        cause = Cause(_file_label(partner, was, now))
        cause.entered = [i for i in unexplained_entered if i in new_ids and i not in old_ids]
        cause.left = [i for i in unexplained_left if i in old_ids and i not in new_ids]
        moved = [i for i in changed_amount if new_ids.get(i) != old_ids.get(i)
                 and (i in new_ids or i in old_ids)]
        cause.amount = (after[cause.entered].sum() - before[cause.left].sum()
                        + sum(after[i] - before[i] for i in moved))
        changed_amount = [i for i in changed_amount if i not in moved]
        unexplained_entered = [i for i in unexplained_entered if i not in cause.entered]
        unexplained_left = [i for i in unexplained_left if i not in cause.left]
        if cause.entered or cause.left or moved:
            causes.append(cause)
    if unexplained_entered or unexplained_left or changed_amount:
        code = [u for u in upstream if u.code_changed]
        label = ("code change in " + ", ".join(
            f"{u.key.to_user_string()} ({u.before.code_version[:12]} -> {u.after.code_version[:12]})"
            for u in code)) if code else "not attributable to a changed input or code version"
        cause = Cause(label, unexplained_entered, unexplained_left)
        cause.amount = (after[unexplained_entered].sum() - before[unexplained_left].sum()
                        + sum(after[i] - before[i] for i in changed_amount))
        causes.append(cause)
    total = float(after.sum() - before.sum())
    return RowChanges(metric, causes, total)
