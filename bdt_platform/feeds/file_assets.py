"""Load assets for the partner file feeds: inbox -> lake archive -> contract -> ``raw.<feed>``.

One asset per feed, partitioned ``state x month``, able to load many partitions in one run
(single-run backfills). Several partners may send a feed for one partition (the partner
registry says who, ``inbox.partners``): their rows stand side by side, each partner's newest file
replacing only that partner's rows (``_partner``). For each partition in the run it takes the
file(s) named in the run config - the newest of each partner wins - or, when none is named,
re-loads each partner's newest file archived in the lake - then:

1. decodes and validates them against the feed's pandera contract, in chunks of files (one
   pandera call per chunk, see ``validation.validate_many``); a run of many files does this in
   worker processes while the run's own process lands the chunks already done (``workers``),
   and takes the files ``bdt ingest`` read ahead of it (``prefetch``),
2. archives the original bytes of each valid file in the lake (verified by checksum; written by
   the workers too, while the run's process writes the warehouse),
3. replaces SSNs with person tokens,
4. replaces those partners' rows of the partitions in ``raw.<feed>`` (all partitions of the run
   in one transaction).

A file that breaks the contract is quarantined with its reasons and loads nothing; its partner's
rows of the partition stay as they were. Each partition loaded gets its own materialization,
carrying every file the partition now holds rows of (``sources``: partner, name, sha256, size,
arrival time, archive path, rows) and the files this run landed (``loaded_files``); the
blocking ``contract`` check fails when any file of the run was rejected, so nothing downstream
builds from a bad run.
"""


import datetime as dt
import hashlib
import os
import tempfile
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import dagster as dg

from bdt_platform.core import heartbeat, partitions as parts
from bdt_platform.feeds import contract_rules, parsing, prefetch, rejections, workers
from bdt_platform.feeds.filenames import partner_of
from bdt_platform.feeds.provenance import (CODE_VERSION, FeedLoadReport, partition_version_tags,
                                           sources_of)
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.feeds.specs import FILE_FEED_SPECS, FeedSpec
from bdt_platform.feeds.workers import CHUNK_BYTES, PARALLEL_CHUNK_BYTES, chunk_file_limit
from bdt_platform.core.inbox_interface import Inbox
from bdt_platform.core.partition_events import log_materializations
from bdt_platform.core.pii import mask_ssn
from bdt_platform.core.pii_key import PiiKeyResource
from bdt_platform.storage import archive
from bdt_platform.storage.lake import ArchivedFile, LakeResource
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

CONTRACT_CHECK = "contract"


@dataclass(frozen=True)
class InboxFileRef:
    """One inbox file to land: its path under the inbox root and its arrival time (epoch s)."""

    path: str
    received_at: float

    @classmethod
    def from_config(cls, entry: object, where: str) -> "InboxFileRef":
        """An entry of ``FeedFilesConfig.files``; ``dg.Failure`` saying which one and what is
        wrong unless it is exactly ``{path: text, received_at: number}``."""
        problem = None
        if not isinstance(entry, dict):
            problem = f"is {type(entry).__name__}, not a mapping"
        elif set(entry) != {"path", "received_at"}:
            problem = f"has keys {sorted(entry)}, not ['path', 'received_at']"
        elif not isinstance(entry["path"], str) or not entry["path"]:
            problem = "has no path (text)"
        elif (not isinstance(entry["received_at"], (int, float))
              or isinstance(entry["received_at"], bool)):
            problem = "has a received_at that is not a number (epoch seconds)"
        if problem:
            raise dg.Failure(f"run config {where} {problem}: {entry!r}")
        return cls(entry["path"], float(entry["received_at"]))


class FeedFilesConfig(dg.Config):
    """Which inbox files to land, per partition key (``2024-03-01|PA``), oldest first; the last
    one wins. Partitions of the run that are not listed re-load their newest archived file,
    unless ``only_listed`` is set (``bdt ingest`` and the sensor set it: a run that lands new
    files for some feeds must not touch the others)."""

    files: dict = {}
    """Per partition key, a list of files, each ``{path: <under the inbox root>, received_at:
    <epoch seconds>}``. Dagster checks only that this is a mapping: the load checks the rest as
    the run starts (``refs``). Dagster checking every entry itself took ~1 s of a year's ingest
    (2,448 files; it resolves a run's config three times)."""
    only_listed: bool = False
    worker_processes: int = -1
    """Processes that decode, validate and tokenize files beside the run's own (which writes
    the warehouse). -1: one per core (at most 4) for runs of 64 files or more, none for
    smaller ones; 0: all in the run's process."""

    def refs(self, feed: str) -> dict[str, list[InboxFileRef]]:
        """``files`` checked, per partition key (``dg.Failure`` naming a malformed entry)."""
        refs = {}
        for key, entries in self.files.items():
            if not isinstance(entries, list):
                raise dg.Failure(f"run config raw/{feed} files[{key!r}] is "
                                 f"{type(entries).__name__}, not a list of files: {entries!r}")
            refs[key] = [InboxFileRef.from_config(entry, f"raw/{feed} files[{key!r}][{number}]")
                         for number, entry in enumerate(entries)]
        return refs


def build_file_feed_asset(spec: FeedSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(["raw", spec.name])

    @dg.asset(
        key=key,
        group_name="feeds",
        description=(
            f"{spec.description}\n\nOne partition per state x month: the rows of each "
            f"partner's newest complete `<partner>_<STATE>_<YYYYMM>_{spec.name}.csv[.gz]` file "
            "(several partners may send this feed for a state and month: the partner registry "
            "says who), validated against the partner contract, with SSNs replaced by person "
            f"tokens. Table `raw.{spec.name}`; each row names its `_source_file` and "
            "`_partner`. The materialization's `sources` lists every file the partition holds."
        ),
        partitions_def=parts.state_month_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,
        code_version=CODE_VERSION,
        kinds={"duckdb", "pandas"},
        retry_policy=TRANSIENT_RETRY_POLICY,
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                CONTRACT_CHECK,
                asset=key,
                blocking=True,
                description=(
                    f"Blocking: every {spec.name} file in the run met the partner data contract "
                    "(feeds.md). A file that breaks any rule is copied byte for byte to "
                    "`lake/quarantine/<partner>/<file>` with `<file>.reason.json` (each failed "
                    "rule, its column, row count and up to 20 masked example rows), loads "
                    "nothing, and its partner's rows of the partition stay as they were. "
                    "Rules:\n\n"
                    + contract_rules.describe(spec.contract)
                ),
            )
        ],
        metadata={"table": spec.table},
    )
    @transient_retries
    def _load(context: dg.AssetExecutionContext, config: FeedFilesConfig, inbox: dg.ResourceParam[Inbox],
              lake: LakeResource, warehouse: Warehouse, pii: PiiKeyResource):
        report = FeedLoadReport(spec.name)
        landed: list[LandedFile] = []
        landed_inbox_paths: list[str] = []
        keys = context.partition_keys
        named = config.refs(spec.name)
        listed = sum(len(named.get(key, [])) for key in keys)
        files = listed if config.only_listed else max(listed, len(keys))
        processes = workers.worker_count(config.worker_processes, files)
        ahead = prefetch.active()
        if config.worker_processes < 0 and ahead is not None:
            # ``bdt ingest`` judged the whole inbox worth its workers (files and bytes): a feed
            # of a few big files is too (and what they read ahead is taken, not read again).
            processes = max(processes, ahead.runner.processes)
        if processes:
            context.log.info(f"{spec.name}: validating in {processes} worker processes")
        # A transient failure (warehouse locked, inbox unreachable) is retried
        # (@transient_retries): nothing is committed before the batch ends.
        # Big files' typed rows wait for the warehouse in a temporary folder (``parsing``,
        # ``staged_rows``), deleted as they are written and, whatever happens, at the end.
        with tempfile.TemporaryDirectory(prefix="bdt-rows-") as spill_dir, \
                prefetch.chunk_runner(processes) as runner, warehouse.batch() as batch:
            loader = _ChunkLoader(context, spec, key, lake, report, pii.secret(), runner,
                                  chunk_file_limit(files, processes), read_ahead=prefetch.active(),
                                  spill_dir=spill_dir)
            staged_rows = 0
            for index, partition in enumerate(keys, start=1):
                state, month = parts.split_key(partition)
                refs = named.get(partition, [])
                if refs:
                    # Per partner, earlier deliveries in the same run are archived as received;
                    # the newest wins.
                    for partner_refs in _by_partner(refs, lambda r: _filename(r.path)).values():
                        for ref in partner_refs[:-1]:
                            data = inbox.read_bytes(ref.path)
                            lake.archive(spec.name, state, month, _filename(ref.path), data,
                                         _utc(ref.received_at))
                        newest = partner_refs[-1]
                        loader.add(_Incoming(partition, state, month, _filename(newest.path),
                                             inbox.read_bytes(newest.path),
                                             _utc(newest.received_at)))
                    landed_inbox_paths.extend(ref.path for ref in refs)
                elif config.only_listed:
                    continue
                else:
                    archived_paths = lake.archived_files(spec.name, state, month)
                    if not archived_paths:
                        context.log.warning(f"{partition}: no file named in the run config and none "
                                            "archived in the lake; nothing to load")
                        continue
                    for partner_paths in _by_partner(
                            archived_paths, lambda path: path.rsplit("/", 1)[-1].split("_", 2)[2]
                    ).values():
                        archived, data = lake.read_archived(partner_paths[-1])
                        loader.add(_Incoming(partition, state, month, archived.filename, data,
                                             archived.received_at, archived))
                just_landed = loader.land_finished(batch)
                landed.extend(just_landed)
                staged_rows += sum(file.rows for file in just_landed)
                heartbeat.note(f"{spec.name}: {index}/{len(keys)} partitions read, "
                               f"{staged_rows:,} rows staged")
                if index % 100 == 0:
                    context.log.info(f"{spec.name}: {index}/{len(keys)} partitions read; "
                                     f"{report.summary()}")
            landed.extend(loader.land_all(batch))
            heartbeat.note(f"{spec.name}: {len(landed)} file(s), "
                           f"{sum(file.rows for file in landed):,} rows staged; committing")
        # Committed: only now is it true that these partitions hold the new rows.
        heartbeat.note(f"{spec.name}: committed; recording {len(landed)} file(s)' provenance")
        log_materializations(context, partition_materializations(
            key, spec, landed, previous_sources(context.instance, key,
                                                {f.incoming.partition for f in landed})))
        context.log.info(f"{spec.name}: {report.summary()}")
        for path in landed_inbox_paths:
            inbox.mark_processed(path)
        yield dg.AssetCheckResult(
            check_name=CONTRACT_CHECK,
            asset_key=key,
            passed=not report.rejected,
            severity=dg.AssetCheckSeverity.ERROR,
            description=_check_description(report),
            metadata=report.as_metadata(),
        )

    return _load


class WorkerDied(RuntimeError):
    """A worker process died (killed, e.g. out of memory, or crashed) while reading a chunk, or
    while writing the archive copies of its accepted files (``doing="archiving"``)."""

    def __init__(self, feed: str, filenames: list[str], doing: str = "reading"):
        named = filenames[0] if len(filenames) == 1 else f"{filenames[0]} .. {filenames[-1]}"
        super().__init__(
            f"{feed}: a worker process died while {doing} {len(filenames)} file(s) ({named}): "
            "it was killed (out of memory?) or crashed. Nothing of this run was committed and "
            "its files stay in the inbox; run it again, or set worker_processes: 0 in the "
            f"raw/{feed} asset's run config to read the files in the run's own process.")


@dataclass
class _Incoming:
    """One file to land in one partition: its bytes, and where it came from."""

    partition: str
    state: str
    month: dt.date
    filename: str
    data: bytes
    received: dt.datetime
    archived: ArchivedFile | None = None  # set when re-loaded from the lake's archive

    @property
    def partner(self) -> str:
        """The partner that sent it (the file name's first part; the registry allowed it)."""
        return partner_of(self.filename)


@dataclass(frozen=True)
class LandedFile:
    """A file whose rows a run's batch wrote: its partition, its archive copy and its rows."""

    incoming: _Incoming
    archived: ArchivedFile
    rows: int
    files_in_chunk: int
    chunk_seconds: float

    def source(self) -> dict:
        """The file as a partition's ``sources`` entry lists it."""
        return {"partner": self.incoming.partner, "file": self.archived.filename,
                "sha256": self.archived.sha256, "size_bytes": self.archived.size,
                "received_at": self.archived.received_at.isoformat(),
                "archive_path": self.archived.path, "rows": self.rows}


def _by_partner(items: list, filename) -> dict[str, list]:
    """``items`` (oldest first) grouped by the partner their file name names, order kept."""
    grouped: dict[str, list] = {}
    for item in items:
        grouped.setdefault(partner_of(filename(item)), []).append(item)
    return grouped


def previous_sources(instance: dg.DagsterInstance, key: dg.AssetKey,
                     partitions: set[str]) -> dict[str, list[dict]]:
    """Per partition of ``partitions`` materialized before, the files it held rows of (from its
    latest materialization): what a run that lands some partners' files keeps of the others'.
    Only partitions materialized before are looked up (one indexed read each)."""
    if not partitions:
        return {}
    found = {}
    for partition in sorted(partitions & set(instance.get_materialized_partitions(key))):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records
        if records:
            found[partition] = sources_of(records[0].asset_materialization.metadata)
    return found


def partition_materializations(key: dg.AssetKey, spec: FeedSpec, landed: list[LandedFile],
                               before: dict[str, list[dict]]) -> list[dg.AssetMaterialization]:
    """One materialization per partition the run wrote: every file it now holds rows of (the
    files landed, and the other partners' files it kept), the rows in all, and what was landed."""
    by_partition: dict[str, list[LandedFile]] = {}
    for file in landed:
        by_partition.setdefault(file.incoming.partition, []).append(file)
    events = []
    for partition, files in by_partition.items():
        mine = {file.incoming.partner for file in files}
        sources = sorted([*(s for s in before.get(partition, []) if s["partner"] not in mine),
                          *(file.source() for file in files)], key=lambda s: s["partner"])
        newest = max(files, key=lambda f: (f.archived.received_at, f.archived.filename))
        rows = sum(s["rows"] or 0 for s in sources)
        events.append(dg.AssetMaterialization(
            asset_key=key,
            partition=partition,
            metadata={
                "dagster/row_count": rows,
                # The file this run landed last (of several partners: the newest).
                **newest.archived.as_metadata(),
                "sources": dg.MetadataValue.json(sources),
                "partners": ", ".join(s["partner"] for s in sources),
                "loaded_files": dg.MetadataValue.json(
                    [{"partner": f.incoming.partner, "file": f.archived.filename,
                      "rows": f.rows} for f in files]),
                "table": spec.table,
                "code_version": CODE_VERSION,
                "reloaded_from_archive": all(f.incoming.archived is not None for f in files),
                "loaded_with_files": max(f.files_in_chunk for f in files),
                "chunk_seconds": max(f.chunk_seconds for f in files),
            },
            # Its data version: the files it holds rows of (every partner's), and the code.
            tags=partition_version_tags([f"{s['partner']}:{s['sha256']}" for s in sources]),
        ))
    return events


class _ChunkLoader:
    """Gathers files into chunks, has each chunk decoded, validated and tokenized
    (``parsing.prepare_files``, in a worker process when the runner has them), then lands the
    finished chunks in order: quarantines the rejected files, has the accepted ones archived
    (``archive.store_many``, in a worker too), stages their rows in the warehouse batch and
    makes their materializations. Every archive copy is checked written before the last chunk
    is landed, so the batch commits only rows whose files the lake holds."""

    def __init__(self, context, spec: FeedSpec, key: dg.AssetKey,
                 lake: LakeResource, report: FeedLoadReport, pii_key: str,
                 runner: workers.ChunkRunner, chunk_files: int | None = None,
                 prepare=parsing.prepare_files, read_ahead: prefetch.Prefetch | None = None,
                 store=archive.store_many, spill_dir: str | None = None):
        self.context, self.spec, self.key = context, spec, key
        self.lake, self.report, self.pii_key, self.runner = lake, report, pii_key, runner
        self.chunk_bytes = PARALLEL_CHUNK_BYTES if runner.processes else CHUNK_BYTES
        self.chunk_files = chunk_files
        self.prepare = prepare  # what a chunk goes through (parsing.prepare_files)
        self.store = store  # what writes its archive copies (archive.store_many)
        self.read_ahead = read_ahead  # files ``bdt ingest`` read ahead of the run (prefetch)
        self.spill_dir = spill_dir  # where big files' typed rows wait to be written
        self.pending: list[_Incoming] = []
        self.pending_taken: list[tuple[Future, int]] = []  # their read-ahead results, if taken
        self.pending_bytes = 0
        self.in_flight: deque[tuple[list[_Incoming], Future | prefetch.Gathered]] = deque()
        # Archive copies being written (by the workers, when the runner has them), per chunk.
        self.archiving: deque[tuple[list[str], Future]] = deque()

    def add(self, incoming: _Incoming) -> None:
        taken = None if self.read_ahead is None else self.read_ahead.take(
            self.spec.name, incoming.filename, incoming.data, incoming.state, incoming.month,
            self.pii_key)
        if self.pending and (taken is None) != (not self.pending_taken):
            self._submit()  # a chunk is either all read ahead or all sent now
        self.pending.append(incoming)
        if taken is not None:
            self.pending_taken.append(taken)
        self.pending_bytes += len(incoming.data)
        if workers.chunk_full(self.pending_bytes, len(self.pending), self.chunk_bytes,
                              self.chunk_files):
            self._submit()

    def land_finished(self, batch, everything: bool = False) -> list[LandedFile]:
        """Land the chunks that are done, oldest first; wait only when too many are in flight
        (or, with ``everything``, for all of them)."""
        events = []
        while self.in_flight and (everything or self.in_flight[0][1].done()
                                  or len(self.in_flight) > self.runner.in_flight_limit):
            chunk, future = self.in_flight.popleft()
            try:
                prepared = future.result()
            except BrokenProcessPool as exc:
                raise WorkerDied(self.spec.name, [i.filename for i in chunk]) from exc
            events.extend(self._land(chunk, prepared, batch))
        while self.archiving and (everything or self.archiving[0][1].done()):
            filenames, future = self.archiving.popleft()
            try:
                future.result()  # an archive copy that failed fails the run before its commit
            except BrokenProcessPool as exc:
                raise WorkerDied(self.spec.name, filenames, "archiving") from exc
        return events

    def land_all(self, batch) -> list[LandedFile]:
        self._submit()
        return self.land_finished(batch, everything=True)

    def _submit(self) -> None:
        chunk, self.pending, self.pending_bytes = self.pending, [], 0
        taken, self.pending_taken = self.pending_taken, []
        if taken:
            self.in_flight.append((chunk, prefetch.Gathered(taken)))
        elif chunk:
            self.in_flight.append((chunk, self.runner.submit(
                self.prepare, self.spec.name,
                [(i.filename, i.data, i.state, i.month) for i in chunk], self.pii_key,
                self.spill_dir)))

    def _land(self, chunk: list[_Incoming], prepared: parsing.PreparedFiles, batch
              ) -> list[LandedFile]:
        started = time.perf_counter()
        good = []
        for incoming, rejected in zip(chunk, prepared.verdicts):
            if rejected is None:
                good.append(incoming)
            else:
                self._quarantine(incoming, rejected)
        if not good:
            return []
        archived = [i.archived or archive.archived_file(self.spec.name, i.state, i.month,
                                                        i.filename, i.data, i.received)
                    for i in good]
        # The archive copies are written beside the warehouse write (by the workers, when
        # there are), and all of them are checked before the batch commits (``land_finished``).
        fresh = [(stored, i.data) for stored, i in zip(archived, good) if i.archived is None]
        if fresh:
            self.archiving.append(([stored.filename for stored, _ in fresh], self.runner.submit(
                self.store, self.lake.root, dict(self.lake.storage_options), fresh)))
        staged = prepared.staged()
        # Each file replaces its own partner's rows of its partition, no one else's.
        batch.replace(self.spec.table, staged, [(i.state, i.month, i.partner) for i in good])
        seconds = round(prepared.seconds + time.perf_counter() - started, 3)
        landed = []
        for incoming, stored, rows in zip(good, archived, prepared.rows):
            self.report.load(incoming.partition, incoming.filename, rows)
            landed.append(LandedFile(incoming, stored, rows, len(good), seconds))
        worker = "" if prepared.process == os.getpid() else f", read in worker {prepared.process}"
        spilled = (f" ({len(prepared.spilled)} big file(s) validated a slice at a time, their "
                   "rows spilled to disk)" if prepared.spilled else "")
        self.context.log.info(f"{self.spec.name}: {len(good)} file(s), "
                              f"{staged.num_rows} rows staged for {self.spec.table}{spilled} in "
                              f"{seconds}s{worker}")
        return landed

    def _quarantine(self, incoming: _Incoming, rejected: rejections.FileRejected) -> None:
        where = self.lake.quarantine(incoming.partner, incoming.filename, incoming.data, _reason(
            self.spec, incoming.partner, incoming.partition, incoming.filename, incoming.data,
            incoming.received, rejected))
        self.report.reject(incoming.partition, incoming.filename, mask_ssn(str(rejected)), where)
        self.context.log.error(f"{incoming.filename}: quarantined to {where} "
                               f"({mask_ssn(str(rejected))}); {incoming.partition} keeps its "
                               f"previous rows of {incoming.partner}")


def _filename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _check_description(report: FeedLoadReport, shown: int = 20) -> str:
    """The check result as the UI shows it: the counts, then each rejected file and why."""
    lines = [report.summary()]
    for item in report.rejected[:shown]:
        lines.append(f"- `{item['file']}` [{item['partition']}]: {item['reason']} "
                     f"(lake/{item['quarantined_to']})")
    if len(report.rejected) > shown:
        lines.append(f"- ... and {len(report.rejected) - shown} more (see metadata `rejected`)")
    return "\n".join(lines)


def _utc(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.timezone.utc)


def _reason(spec: FeedSpec, partner: str, partition: str, filename: str, data: bytes,
            received: dt.datetime, rejected: rejections.FileRejected) -> dict:
    return {
        "file": filename,
        "feed": spec.name,
        "partner": partner,
        "partition": partition,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "received_at": received.isoformat(),
        "rejected_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "summary": mask_ssn(str(rejected)),
        "failures": [failure.as_dict() for failure in rejected.failures],
    }


FILE_FEED_ASSETS = [build_file_feed_asset(spec) for spec in FILE_FEED_SPECS.values()]
