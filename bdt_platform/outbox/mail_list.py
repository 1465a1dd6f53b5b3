"""``outbox/mail_list``: the month's mail list of a state, as the print vendor receives it.

One file per state x month partition, ``<vendor>_<STATE>_<YYYYMM>_maillist.csv``: the rows of
``outreach.mail_list`` (who, chosen by the outreach rules: ``bdt_platform/outreach/``) in rank
order, with the mailing name and address from the partner eligibility row the list names. The
vendor is the partner the registry has sending ``mailreturns`` for the state (``mail_vendor``).

Sent once (``outreach.push.push_once``): the file is kept in the lake
(``outbox/<vendor>/<file>``), published to the outbox's ``<vendor>/`` folder
(``/outbox/<vendor>/`` on the partner SFTP server, or ``$BDT_HOME/outbox/<vendor>/``) under a
temporary name and renamed when complete, and a ``.sent.json`` receipt beside the lake copy
records it; a re-run sends nothing again, a failed push is retried by the next run.
"""


import csv
import datetime as dt
import io

import dagster as dg
import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.inbox.partners import PartnerRegistry, PartnerRegistryResource
from bdt_platform.outbox.base import Outbox, OutboxUnavailable
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.outreach import ids, push
from bdt_platform.outreach.mail_list import KEY as LIST_KEY, TABLE as LIST_TABLE
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["outbox", "mail_list"])
#: The feed whose sender is a state's mail vendor: it returns what became of each piece.
RETURNS_FEED = "mailreturns"
CODE_VERSION = source_code_version(__file__, push.__file__)
UPSTREAM = [LIST_KEY, dg.AssetKey(["staging", "stg_partners__eligibility"])]
PUBLISHED_CHECK = "published"

COLUMNS = ["mail_piece_id", "person_token", "first_name", "last_name", "address_line1",
           "address_line2", "city", "state", "zip", "language"]

# The list's rows with the mailing name and address of the eligibility row each one names.
_SQL = f"""
select l.mail_piece_id, l.person_token, e.first_name, e.last_name, e.address_line1,
       e.address_line2, e.city, l.state, e.zip, e.language
from {LIST_TABLE} as l
inner join staging.stg_partners__eligibility as e
    on e.record_id = l.source_record_id and e._partner = l.source_partner
   and e.state = l.state and e.month = l.month
where l.state = ? and l.month = ?
order by l.rank
"""

mail_piece_id = ids.mail_piece_id  # (kept here for callers of the first version)


def mail_vendor(registry: PartnerRegistry, state: str, feed: str = RETURNS_FEED) -> str:
    """The partner that receives ``state``'s list: the one registered to send ``feed`` for it
    (mail returns: the print vendor). ``dg.Failure`` saying what to change when there is none,
    or more than one."""
    vendors = [p.name for p in registry.senders(feed, state)]
    if len(vendors) != 1:
        found = ("no partner is" if not vendors
                 else f"{len(vendors)} partners ({', '.join(vendors)}) are")
        raise dg.Failure(f"{state}: {found} registered to send {feed} for {state} in "
                         f"{registry.source}; the list goes to that one vendor: register "
                         f"exactly one (bdt partners add NAME --feed {feed} --states {state})")
    return vendors[0]


def mail_list_filename(vendor: str, state: str, month: dt.date) -> str:
    return f"{vendor}_{state}_{month:%Y%m}_maillist.csv"


def mail_list_rows(warehouse: Warehouse, state: str, month: dt.date) -> pd.DataFrame:
    """The vendor file's rows of one partition, in rank order."""
    if not warehouse.table_exists(LIST_TABLE):
        raise dg.Failure(f"{LIST_TABLE} does not exist: materialize outreach/mail_list for "
                         f"{state} {month:%Y-%m} first (bdt build)")
    return warehouse.query(_SQL, [state, month])[COLUMNS]


def csv_bytes(frame: pd.DataFrame, columns: list[str]) -> bytes:
    """UTF-8, comma-separated, header row, minimal ``"`` quoting, ``\\n`` line ends (feeds.md)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in frame[columns].itertuples(index=False):
        writer.writerow(["" if pd.isna(value) else value for value in row])
    return buffer.getvalue().encode("utf-8")


def mail_list_csv(frame: pd.DataFrame) -> bytes:
    return csv_bytes(frame, COLUMNS)


def push_partitions(context: dg.AssetExecutionContext, *, key: dg.AssetKey, check: str,
                    outbox: Outbox, lake: LakeResource, files):
    """Push each ``(partition key, vendor, filename, data, rows, extra metadata)`` of ``files``
    once; one materialization per file; the check fails (and the step raises) when any push
    failed, after the others were sent."""
    sent, already, failed = [], [], []
    unavailable = None  # the last refusal: a server that was down makes the step retry
    for partition, vendor, filename, data, rows, extra in files:
        try:
            result = push.push_once(lake, outbox, vendor, filename, data)
        except OutboxUnavailable as exc:
            context.log.error(f"{filename}: not sent (retried on the next run): {exc}")
            failed.append(filename)
            unavailable = exc
            continue
        if result.status == "already_sent":
            already.append(filename)
            note = (" (the list changed since; the sent version stands)"
                    if result.changed_after_sending else "")
            context.log.info(f"{filename}: already sent at {result.receipt.get('sent_at')}; "
                             f"not sent again{note}")
        else:
            sent.append(filename)
            context.log.info(f"{filename}: {rows} rows -> {result.receipt['outbox_location']}")
        context.log_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata={
            "dagster/row_count": rows,
            **{k: v for k, v in result.receipt.items() if k.startswith("outbox_")},
            "lake_path": result.lake_path, "push": result.status,
            "changed_after_sending": result.changed_after_sending,
            "partner": vendor, **extra}))
    yield dg.AssetCheckResult(
        check_name=check, asset_key=key, passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(sent)} file(s) sent, {len(already)} already sent earlier, to "
                     f"{outbox.describe()}" + (f"; not sent: {', '.join(failed)}" if failed
                                               else "")),
        metadata={"sent": len(sent), "already_sent": len(already), "failed": len(failed)})
    if failed:
        # Caused by the outbox's refusal: a step with @transient_retries is retried
        # (core/retries.py); files already sent are not sent again (push_once).
        raise dg.Failure(f"{len(failed)} file(s) could not be sent to {outbox.describe()} "
                         f"(the next run retries them): {', '.join(failed)}") from unavailable


@dg.asset(
    key=KEY,
    group_name="outbox",
    deps=UPSTREAM,
    partitions_def=parts.state_month_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    code_version=CODE_VERSION,
    kinds={"csv", "sftp"},
    # Reads the warehouse, publishes over SFTP.
    retry_policy=TRANSIENT_RETRY_POLICY,
    pool=WAREHOUSE_POOL,
    metadata={"file_pattern": "<mail vendor>_<STATE>_<YYYYMM>_maillist.csv"},
    check_specs=[dg.AssetCheckSpec(PUBLISHED_CHECK, asset=KEY, description=(
        "Every mail list of the run reached the outbox whole, once: uploaded under a temporary "
        "name, its size checked on the server, renamed to its final name, receipt in the "
        "lake; or it had been sent by an earlier run."))],
)
@transient_retries
def mail_list(context: dg.AssetExecutionContext, warehouse: Warehouse,
              outbox: dg.ResourceParam[Outbox], partners: PartnerRegistryResource,
              lake: LakeResource):
    """The mail list as the print-and-mail vendor receives it (the partner registered to send
    the state's mail returns), sent once per state x month.

    One row per piece of `outreach.mail_list`, in rank order: `mail_piece_id` (ours; the vendor
    reports delivery against it), `person_token` (never raw identifiers), the mailing name and
    address, and `language` for the letter. Materialization metadata: rows, whether this run
    sent it or an earlier one had, and the file's lake path, outbox location, size and sha256.
    """
    registry = partners.registry()

    def files():
        for key in context.partition_keys:
            state, month = parts.split_key(key)
            frame = mail_list_rows(warehouse, state, month)
            if frame.empty:
                context.log.warning(f"{state} {month:%Y-%m}: nobody on the mail list; no file")
                continue
            vendor = mail_vendor(registry, state)
            yield (key, vendor, mail_list_filename(vendor, state, month), mail_list_csv(frame),
                   len(frame), {"code_version": CODE_VERSION})

    yield from push_partitions(context, key=KEY, check=PUBLISHED_CHECK, outbox=outbox,
                               lake=lake, files=list(files()))


OUTBOX_ASSETS = [mail_list]
