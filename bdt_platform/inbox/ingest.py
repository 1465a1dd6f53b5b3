"""``bdt ingest``: look at the inbox once, land every complete new file now, in-process.

Files are grouped by feed and covered by partition rectangles, so thousands of files cost a
handful of Dagster runs. Badly named files are quarantined without a run. The case-management
database is extracted for every partition whose rows changed since the last extract.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.casemgmt import EVENT_TIME, CaseManagementDatabase
from bdt_platform.core.inbox_interface import Inbox, InboxFile
from bdt_platform.inbox.partners import PartnerRegistry
from bdt_platform.inbox.quarantine import quarantine_file
from bdt_platform.inbox.scan import Drop, ScanResult, scan
from bdt_platform.core.pii import mask_ssn
from bdt_platform.core.runs import RunOutcome, run_rectangles
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import Warehouse

INGEST_JOB = "ingest_feeds"


@dataclass
class FileResult:
    path: str
    status: str  # loaded | quarantined | superseded | failed | waiting
    detail: str
    partition: str | None = None
    rows: int | None = None

    def line(self) -> str:
        where = f" [{self.partition}]" if self.partition else ""
        return f"{self.status:<11} {self.path}{where}: {self.detail}"


@dataclass
class IngestResult:
    files: list[FileResult] = field(default_factory=list)
    runs: list[RunOutcome] = field(default_factory=list)
    casemgmt: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        bad = {"quarantined", "failed"}
        return 1 if any(f.status in bad for f in self.files) or any(
            not r.success for r in self.runs) else 0


def look_twice(inbox: Inbox, registry: PartnerRegistry, settle_seconds: float,
               sleep: Callable[[float], None] = time.sleep,
               only_paths: Collection[str] | None = None) -> ScanResult:
    """First look; if some files may still be growing, wait and look again (sizes compared).
    ``only_paths``: look at these inbox paths alone (the rest of the inbox is left as it is)."""

    def listing() -> list[InboxFile]:
        files = inbox.list_files()
        return files if only_paths is None else [f for f in files if f.path in only_paths]

    first = listing()
    result = scan(first, None, settle_seconds=settle_seconds, registry=registry)
    if not result.waiting:
        return result
    sleep(settle_seconds)
    sizes = {f.path: f.size for f in first}
    return scan(listing(), sizes, settle_seconds=settle_seconds, registry=registry)


def run_config_for_drops(by_feed: dict[str, dict[str, list[Drop]]]):
    """Run config naming, per feed asset and partition, the inbox files of one rectangle."""

    def make(states: list[str], months: list[dt.date]) -> dict:
        wanted = {parts.partition_key(s, m) for s in states for m in months}
        ops = {}
        for feed, drops in by_feed.items():
            files = {key: [{"path": d.file.path, "received_at": d.file.mtime} for d in found]
                     for key, found in drops.items() if key in wanted}
            ops[f"raw__{feed}"] = {"config": {"files": files, "only_listed": True}}
        return {"ops": ops}
    return make


def ingest(defs: dg.Definitions, instance: dg.DagsterInstance, inbox: Inbox, lake: LakeResource,
           warehouse: Warehouse, casemgmt: CaseManagementDatabase | None,
           settle_seconds: float = 2.0, echo: Callable[[str], None] = print,
           registry: PartnerRegistry | None = None,
           only_paths: Collection[str] | None = None) -> IngestResult:
    """Land every complete new inbox file (``only_paths``: just these inbox paths, and no
    case-management extract). ``registry``: the partner registry in force (default: the
    definitions' ``partners`` resource, read again now)."""
    result = IngestResult()
    if registry is None:
        registry = defs.resources["partners"].registry()
    if only_paths is not None:
        casemgmt = None
    looked = look_twice(inbox, registry, settle_seconds, only_paths=only_paths)
    for file, reason in looked.bad_names:
        where = quarantine_file(inbox, lake, file, reason)
        _report(result, FileResult(file.path, "quarantined", f"{reason} -> lake/{where}"), echo)
    for file in looked.waiting:
        _report(result, FileResult(file.path, "waiting", "still being written; left for later"),
                echo)

    by_feed = looked.by_feed()
    if by_feed:
        pairs = {parts.split_key(k) for drops in by_feed.values() for k in drops}
        for feed, drops in by_feed.items():
            echo(f"{feed}: {sum(len(v) for v in drops.values())} new file(s) for "
                 f"{len(drops)} partition(s)")
        selection = [dg.AssetKey(["raw", feed]) for feed in by_feed]
        # One run for all new files: the load assets only touch the partitions named in the
        # run config (only_listed), so the bounding rectangle costs nothing for the others.
        outcomes = run_rectangles(defs, instance, INGEST_JOB, pairs, selection=selection,
                                  exact=False,
                                  run_config_for=run_config_for_drops(by_feed),
                                  progress=echo_progress(echo))
        result.runs.extend(outcomes)
        for outcome in outcomes:
            for feed, drops in by_feed.items():
                for file_result in _file_results(outcome, feed, drops):
                    _report(result, file_result, echo)

    if casemgmt is not None:
        _ingest_casemgmt(defs, instance, casemgmt, warehouse, result, echo)
    return result


def echo_progress(echo: Callable[[str], None]) -> Callable[[str], None]:
    return lambda message: echo(f"  {message}")


def _report(result: IngestResult, file_result: FileResult, echo: Callable[[str], None]) -> None:
    result.files.append(file_result)
    echo(file_result.line())


def _listed(events, key_path: list[str], name: str):
    """``(event, item)`` for each item of the JSON list ``name`` in the metadata of the events
    (materializations or check evaluations) of the asset ``key_path``."""
    for event in events:
        if event.asset_key.path == key_path:
            entry = event.metadata.get(name)
            for item in (entry.value if entry is not None else []):
                yield event, item


def _file_results(outcome: RunOutcome, feed: str, drops: dict[str, list[Drop]]
                  ) -> list[FileResult]:
    key_path = ["raw", feed]
    # (partition, file) -> rows, for the files the run landed; -> rejection, for those it refused
    loaded = {(m.partition, item["file"]): item["rows"]
              for m, item in _listed(outcome.materializations(), key_path, "loaded_files")}
    rejected = {(item["partition"], item["file"]): item
                for _, item in _listed(outcome.check_evaluations(), key_path, "rejected")}
    results = []
    in_run = {parts.partition_key(s, m) for s in outcome.states for m in outcome.months}
    for key, found in drops.items():
        if key not in in_run:
            continue
        by_partner: dict[str, list[Drop]] = {}
        for drop in found:
            by_partner.setdefault(drop.name.partner, []).append(drop)
        for partner, partner_drops in by_partner.items():
            *older, newest = partner_drops
            for drop in older:
                results.append(FileResult(drop.file.path, "superseded",
                                          f"archived; a newer {partner} file for {key} was "
                                          "loaded", key))
            name = newest.name.filename
            if (key, name) in loaded:
                rows = loaded[(key, name)]
                results.append(FileResult(newest.file.path, "loaded",
                                          f"{rows} rows into raw.{newest.name.feed} "
                                          f"(partner {partner})", key, rows))
            elif (key, name) in rejected:
                item = rejected[(key, name)]
                results.append(FileResult(newest.file.path, "quarantined",
                                          f"{item['reason']} -> lake/{item['quarantined_to']}",
                                          key))
            else:
                # This feed's step's failure first: it says what failed for this file.
                failure = "; ".join(outcome.failures(f"raw__{feed}")
                                    or outcome.failures())[:300] or "not loaded"
                results.append(FileResult(newest.file.path, "failed", mask_ssn(failure), key))
    return results


def changed_casemgmt_partitions(casemgmt: CaseManagementDatabase, warehouse: Warehouse
                                ) -> set[tuple[str, dt.date]]:
    """Partitions whose source row count or latest ``updated_at`` differs from the warehouse."""
    changed: set[tuple[str, dt.date]] = set()
    for table, column in EVENT_TIME.items():
        source = casemgmt.summary(table, column)
        loaded = pd.DataFrame(columns=["state", "month", "n_rows", "latest"])
        if warehouse.table_exists(f"raw.{table}"):
            # Portable SQL (DuckDB and BigQuery); months and times are formatted here.
            loaded = warehouse.query(
                f"SELECT state, month, count(*) AS n_rows, max(updated_at) AS latest "
                f"FROM raw.{table} GROUP BY state, month")
        have = {(r.state, pd.Timestamp(r.month).strftime("%Y-%m")): (int(r.n_rows),
                                                                      _utc_second(r.latest))
                for r in loaded.itertuples()}
        for (state, month), (rows, latest) in source.items():
            if have.get((state, month)) != (rows, latest):
                changed.add((state, parts.parse_month(month)))
    return changed


def _utc_second(value) -> str | None:
    """A warehouse timestamp as ``YYYY-MM-DDTHH:MM:SS`` in UTC (truncated), None when missing."""
    if value is None or pd.isna(value):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S")


def _ingest_casemgmt(defs, instance, casemgmt, warehouse, result, echo) -> None:
    changed = changed_casemgmt_partitions(casemgmt, warehouse)
    if not changed:
        echo(f"casemgmt: no changes in {casemgmt.describe()}")
        return
    echo(f"casemgmt: {len(changed)} partition(s) changed in {casemgmt.describe()}")
    keys = [dg.AssetKey(["raw", table]) for table in EVENT_TIME]
    only = sorted(parts.partition_key(s, m) for s, m in changed)
    config = {"ops": {f"raw__{table}": {"config": {"only": only}} for table in EVENT_TIME}}
    outcomes = run_rectangles(defs, instance, INGEST_JOB, changed, selection=keys, exact=False,
                              run_config_for=lambda states, months: config,
                              progress=echo_progress(echo))
    result.runs.extend(outcomes)
    for outcome in outcomes:
        rows: dict[str, int] = {}
        for m in outcome.materializations():
            table = m.asset_key.path[-1]
            rows[table] = rows.get(table, 0) + m.metadata["dagster/row_count"].value
        line = ", ".join(f"{n} rows into raw.{t}" for t, n in sorted(rows.items()))
        status = "loaded" if outcome.success else "failed"
        detail = line or "; ".join(outcome.failures())[:300]
        result.casemgmt.append(detail)
        echo(f"{status:<11} casemgmt {outcome.states[0]}..{outcome.states[-1]} "
             f"{outcome.months[0]:%Y-%m}..{outcome.months[-1]:%Y-%m}: {detail}")
        if not outcome.success:
            result.files.append(FileResult("casemgmt", "failed", detail))
