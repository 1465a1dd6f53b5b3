"""``outbox/mail_list``: the monthly list of people to mail, per state, sent to the print vendor.

One file per state x month partition, ``<vendor>_<STATE>_<YYYYMM>_maillist.csv``, published to
the outbox's ``<vendor>/`` folder (``/outbox/<vendor>/`` on the partner SFTP server, or
``$BDT_HOME/outbox/<vendor>/`` locally) under a temporary name and renamed when complete. The
vendor is the partner the registry has sending ``mailreturns`` for the state: the print-and-mail
vendor that reports back on the pieces it mailed (``mail_vendor``).

Who is on it (this first version): every person (``person_token``) in that state and month's
partner eligibility file who is a known person in ``marts.dim_person``, once, with the mailing
name and address from the eligibility row. A later version applies the full outreach rules
(not enrolled in a program they qualify for, not mailed in 90 days, address not returned,
not opted out).

Each row gets a new ``mail_piece_id``, ``MP-<STATE>-<YYYYMM>-<10 hex>``: a hash of state, month
and person token, so rebuilding a partition issues the same ids (the vendor's return file quotes
them back in ``mailreturns``) and no two partitions share one.
"""


import csv
import datetime as dt
import hashlib
import io

import dagster as dg
import pandas as pd

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.provenance import source_code_version
from bdt_platform.inbox.partners import PartnerRegistry, PartnerRegistryResource
from bdt_platform.outbox.base import Outbox, OutboxUnavailable
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL, Warehouse

KEY = dg.AssetKey(["outbox", "mail_list"])
#: The feed whose sender is a state's mail vendor: it returns what became of each piece.
RETURNS_FEED = "mailreturns"
CODE_VERSION = source_code_version(__file__)
UPSTREAM = [dg.AssetKey(["staging", "stg_partners__eligibility"]),
            dg.AssetKey(["marts", "dim_person"])]
PUBLISHED_CHECK = "published"

COLUMNS = ["mail_piece_id", "person_token", "first_name", "last_name", "address_line1",
           "address_line2", "city", "state", "zip", "language"]

# Portable SQL: one row per person in the partition's eligibility file (the lowest record_id
# wins when a person appears twice), known to the person dimension.
_SQL = """
select person_token, first_name, last_name, address_line1, address_line2, city, state, zip,
       language
from (
    select e.*, row_number() over (partition by e.person_token order by e.record_id) as rn
    from staging.stg_partners__eligibility as e
    inner join marts.dim_person as p on p.person_token = e.person_token
    where e.state = ? and e.month = ?
) as ranked
where rn = 1
order by person_token
"""


def mail_vendor(registry: PartnerRegistry, state: str) -> str:
    """The partner that receives ``state``'s mail list: the one registered to send its mail
    returns. ``dg.Failure`` saying what to change when there is none, or more than one."""
    vendors = [p.name for p in registry.senders(RETURNS_FEED, state)]
    if len(vendors) != 1:
        found = ("no partner is" if not vendors
                 else f"{len(vendors)} partners ({', '.join(vendors)}) are")
        raise dg.Failure(f"{state}: {found} registered to send {RETURNS_FEED} for {state} in "
                         f"{registry.source}; the mail list goes to that one print-and-mail "
                         "vendor: register exactly one (bdt partners add NAME --feed "
                         f"{RETURNS_FEED} --states {state})")
    return vendors[0]


def mail_list_filename(vendor: str, state: str, month: dt.date) -> str:
    return f"{vendor}_{state}_{month:%Y%m}_maillist.csv"


def mail_piece_id(state: str, month: dt.date, person_token: str) -> str:
    """The id of the piece mailed to ``person_token`` for ``state`` x ``month`` (deterministic)."""
    digest = hashlib.sha256(f"{state}|{month:%Y%m}|{person_token}".encode()).hexdigest()
    return f"MP-{state}-{month:%Y%m}-{digest[:10].upper()}"


def mail_list_rows(warehouse: Warehouse, state: str, month: dt.date) -> pd.DataFrame:
    """The mail list of one partition, in file order, with ``mail_piece_id`` assigned."""
    frame = warehouse.query(_SQL, [state, month])
    frame.insert(0, "mail_piece_id", [mail_piece_id(state, month, token)
                                      for token in frame["person_token"]])
    if frame["mail_piece_id"].duplicated().any():
        raise dg.Failure(f"mail_piece_id collision in {state} {month:%Y-%m}")
    return frame[COLUMNS]


def mail_list_csv(frame: pd.DataFrame) -> bytes:
    """UTF-8, comma-separated, header row, minimal ``"`` quoting, ``\\n`` line ends (feeds.md)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for row in frame.itertuples(index=False):
        writer.writerow(["" if pd.isna(value) else value for value in row])
    return buffer.getvalue().encode("utf-8")


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
        "Every mail list of the run reached the outbox whole: uploaded under a temporary name, "
        "its size checked on the server, then renamed to its final name."))],
)
@transient_retries
def mail_list(context: dg.AssetExecutionContext, warehouse: Warehouse,
              outbox: dg.ResourceParam[Outbox], partners: PartnerRegistryResource):
    """People to mail this month in this state, as the print-and-mail vendor receives them
    (the partner registered to send the state's mail returns).

    One row per person: `mail_piece_id` (new, ours; the vendor reports delivery against it),
    `person_token` (never raw identifiers), the mailing name and address, and `language` for
    the letter. Materialization metadata: rows, and the published file's name, location, size
    and sha256.
    """
    published, failed = [], []
    unavailable = None  # the last refusal: a server that was down makes the step retry
    registry = partners.registry()
    for key in context.partition_keys:
        state, month = parts.split_key(key)
        vendor = mail_vendor(registry, state)
        frame = mail_list_rows(warehouse, state, month)
        if frame.empty:
            context.log.warning(f"{state} {month:%Y-%m}: nobody in the eligibility file; "
                                "no mail list sent")
            continue
        data = mail_list_csv(frame)
        filename = mail_list_filename(vendor, state, month)
        try:
            receipt = outbox.publish(vendor, filename, data)
        except OutboxUnavailable as exc:
            context.log.error(f"{filename}: not published: {exc}")
            failed.append(filename)
            unavailable = exc
            continue
        published.append(filename)
        context.log.info(f"{filename}: {len(frame)} people -> {receipt.location}")
        context.log_event(dg.AssetMaterialization(asset_key=KEY, partition=key, metadata={
            "dagster/row_count": len(frame),
            **receipt.as_metadata(),
            "partner": vendor,
            "code_version": CODE_VERSION,
        }))
    yield dg.AssetCheckResult(
        check_name=PUBLISHED_CHECK, asset_key=KEY, passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{len(published)} mail list(s) published to {outbox.describe()}"
                     + (f"; not published: {', '.join(failed)}" if failed else "")),
        metadata={"published": len(published), "failed": len(failed)},
    )
    if failed:
        # Caused by the outbox's refusal: a server that was down makes the step retry
        # (core/retries.py); published lists are published again, the same bytes.
        raise dg.Failure(f"{len(failed)} mail list(s) could not be published to "
                         f"{outbox.describe()}: {', '.join(failed)}") from unavailable


OUTBOX_ASSETS = [mail_list]
