"""Load assets for the partner file feeds: inbox -> lake archive -> contract -> ``raw.<feed>``.

One asset per feed, partitioned ``state x month``, able to load many partitions in one run
(single-run backfills). For each partition in the run it takes the file(s) named in the run
config - or, when none is named, re-loads the newest file archived in the lake - then:

1. archives the original bytes in the lake (verified by checksum),
2. decodes and validates them against the feed's pandera contract,
3. replaces SSNs with person tokens,
4. replaces the partition's rows in ``raw.<feed>`` (all partitions of the run in one transaction).

A file that breaks the contract is quarantined with its reasons and loads nothing; its partition
keeps its previous rows. Each partition loaded gets its own materialization, carrying the source
file's name, sha256, size and arrival time; the blocking ``contract`` check fails when any file
of the run was rejected, so nothing downstream builds from a bad run.
"""


import datetime as dt
import hashlib
import time

import dagster as dg

from bdt_platform import partitions as parts
from bdt_platform.feeds import contracts, parsing
from bdt_platform.feeds.filenames import FEED_PARTNER
from bdt_platform.feeds.provenance import CODE_VERSION, FeedLoadReport
from bdt_platform.feeds.specs import FILE_FEED_SPECS, FeedSpec
from bdt_platform.inbox.base import Inbox
from bdt_platform.pii import mask_ssn
from bdt_platform.pii_resource import PiiKeyResource
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import Warehouse

CONTRACT_CHECK = "contract"


class InboxFileRef(dg.Config):
    """One inbox file to land: its path under the inbox root and its arrival time (epoch s)."""

    path: str
    received_at: float


class FeedFilesConfig(dg.Config):
    """Which inbox files to land, per partition key (``2024-03-01|PA``), oldest first; the last
    one wins. Partitions of the run that are not listed re-load their newest archived file,
    unless ``only_listed`` is set (``bdt ingest`` and the sensor set it: a run that lands new
    files for some feeds must not touch the others)."""

    files: dict[str, list[InboxFileRef]] = {}
    only_listed: bool = False


def build_file_feed_asset(spec: FeedSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(["raw", spec.name])
    partner = FEED_PARTNER[spec.name]

    @dg.asset(
        key=key,
        group_name="feeds",
        description=(
            f"{spec.description}\n\nOne partition per state x month: the rows of the newest "
            f"complete `{partner}_<STATE>_<YYYYMM>_{spec.name}.csv[.gz]` file, validated against "
            "the partner contract, with SSNs replaced by person tokens. Table `raw."
            f"{spec.name}`; each row names its `_source_file`."
        ),
        partitions_def=parts.state_month_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,
        code_version=CODE_VERSION,
        kinds={"duckdb", "pandas"},
        check_specs=[
            dg.AssetCheckSpec(
                CONTRACT_CHECK,
                asset=key,
                blocking=True,
                description=(
                    f"Blocking: every {spec.name} file in the run met the partner data contract "
                    "(feeds.md). A file that breaks any rule is copied byte for byte to "
                    f"`lake/quarantine/{partner}/<file>` with `<file>.reason.json` (each failed "
                    "rule, its column, row count and up to 20 masked example rows), loads "
                    "nothing, and its partition keeps its previous rows. Rules:\n\n"
                    + contracts.describe(spec.contract)
                ),
            )
        ],
        metadata={"table": spec.table, "partner": partner},
    )
    def _load(context: dg.AssetExecutionContext, config: FeedFilesConfig, inbox: dg.ResourceParam[Inbox],
              lake: LakeResource, warehouse: Warehouse, pii: PiiKeyResource):
        report = FeedLoadReport(spec.name)
        loaded_events: list[dg.AssetMaterialization] = []
        landed_inbox_paths: list[str] = []
        pii_key = pii.secret()
        keys = context.partition_keys
        with warehouse.batch() as batch:
            for index, partition in enumerate(keys, start=1):
                state, month = parts.split_key(partition)
                refs = config.files.get(partition, [])
                if refs:
                    # Earlier deliveries in the same run are archived as received; the newest wins.
                    for ref in refs[:-1]:
                        data = inbox.read_bytes(ref.path)
                        lake.archive(spec.name, state, month, _filename(ref.path), data,
                                     _utc(ref.received_at))
                    data = inbox.read_bytes(refs[-1].path)
                    received = _utc(refs[-1].received_at)
                    filename, archived_path = _filename(refs[-1].path), None
                    landed_inbox_paths.extend(ref.path for ref in refs)
                elif config.only_listed:
                    continue
                else:
                    archived_paths = lake.archived_files(spec.name, state, month)
                    if not archived_paths:
                        context.log.warning(f"{partition}: no file named in the run config and none "
                                            "archived in the lake; nothing to load")
                        continue
                    archived, data = lake.read_archived(archived_paths[-1])
                    filename, received, archived_path = (archived.filename, archived.received_at,
                                                         archived.path)
                event = _load_partition(context, spec, key, partner, batch, lake, report, pii_key,
                                        partition, filename, data, received, archived_path)
                if event is not None:
                    loaded_events.append(event)
                if index % 50 == 0:
                    context.log.info(f"{spec.name}: {index}/{len(keys)} partitions processed")
        # Committed: only now is it true that these partitions hold the new rows.
        for event in loaded_events:
            context.log_event(event)
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


def _load_partition(context, spec: FeedSpec, key: dg.AssetKey, partner: str, batch, lake: LakeResource,
                    report: FeedLoadReport, pii_key: str, partition: str, filename: str,
                    data: bytes, received: dt.datetime, archived_path: str | None):
    """Validate one file and stage its rows; quarantine it instead when it breaks the contract."""
    state, month = parts.split_key(partition)
    started = time.perf_counter()
    try:
        text = parsing.decode(data, filename)
        frame = parsing.read_text_frame(text, spec)
        parsing.validate(frame, spec, state, month)
    except parsing.FileRejected as rejected:
        where = lake.quarantine(partner, filename, data, _reason(spec, partner, partition, filename,
                                                                 data, received, rejected))
        report.reject(partition, filename, mask_ssn(str(rejected)), where)
        context.log.error(f"{filename}: quarantined to {where} ({mask_ssn(str(rejected))}); "
                          f"{partition} keeps its previous rows")
        return None
    archived = (lake.archive(spec.name, state, month, filename, data, received)
                if archived_path is None else lake.read_archived(archived_path)[0])
    table = parsing.to_table(frame, spec, state=state, month=month, source_file=filename,
                             pii_key=pii_key)
    batch.replace(spec.table, table, [(state, month)])
    report.load(partition, filename, table.num_rows)
    context.log.info(f"{filename}: loaded {table.num_rows} rows into {spec.table} [{partition}]")
    return dg.AssetMaterialization(
        asset_key=key,
        partition=partition,
        metadata={
            "dagster/row_count": table.num_rows,
            **archived.as_metadata(),
            "table": spec.table,
            "code_version": CODE_VERSION,
            "reloaded_from_archive": archived_path is not None,
            "load_seconds": round(time.perf_counter() - started, 3),
        },
    )


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
            received: dt.datetime, rejected: parsing.FileRejected) -> dict:
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
