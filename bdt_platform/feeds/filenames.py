"""Partner drop file names: ``<partner>_<STATE>_<YYYYMM>_<feed>.csv[.gz]`` under ``<partner>/``.

Parsing a name is the first contract check: a name that does not parse, names an unknown feed,
state or month, or was dropped in another partner's folder is quarantined with the reason. Which
partner may send which feed for which states is the partner registry's to say
(``inbox.partners``), not this module's.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from bdt_platform.core.partitions import STATES, partition_key

FILE_FEEDS = ("eligibility", "outcomes", "mailreturns", "nudges")

_NAME_RE = re.compile(
    r"^(?P<partner>[a-z0-9]+)_(?P<state>[A-Z]{2})_(?P<yyyymm>\d{6})_(?P<feed>[a-z]+)"
    r"\.(?P<ext>csv|csv\.gz)$"
)


class BadFileName(ValueError):
    """The file name breaks the naming contract; the message says how."""


@dataclass(frozen=True)
class DropName:
    partner: str
    state: str
    month: dt.date
    feed: str
    filename: str

    @property
    def gzipped(self) -> bool:
        return self.filename.endswith(".gz")

    @property
    def partition_key(self) -> str:
        return partition_key(self.state, self.month)


def partner_of(filename: str) -> str:
    """The partner a drop's file name names (its first part): ``paagency_PA_...`` -> ``paagency``."""
    return filename.split("_", 1)[0]


def drop_filename(partner: str, state: str, month: dt.date, feed: str, gzip: bool = False) -> str:
    return f"{partner}_{state}_{month:%Y%m}_{feed}.csv" + (".gz" if gzip else "")


def parse_drop_name(folder: str, filename: str) -> DropName:
    """Parse ``filename`` found in inbox folder ``folder`` (the partner's folder)."""
    match = _NAME_RE.match(filename)
    if not match:
        raise BadFileName(
            f"file name {filename!r} does not match <partner>_<STATE>_<YYYYMM>_<feed>.csv[.gz]"
        )
    partner, state, yyyymm, feed = (match["partner"], match["state"], match["yyyymm"],
                                    match["feed"])
    if partner != folder:
        raise BadFileName(f"partner {partner!r} in the name differs from its folder {folder!r}")
    if feed not in FILE_FEEDS:
        raise BadFileName(f"unknown feed {feed!r} (expected one of {', '.join(FILE_FEEDS)})")
    if state not in STATES:
        raise BadFileName(f"unknown state {state!r}")
    year, month_number = int(yyyymm[:4]), int(yyyymm[4:])
    if not (1 <= month_number <= 12 and 2000 <= year <= 2100):
        raise BadFileName(f"bad month {yyyymm!r} (expected YYYYMM)")
    return DropName(partner, state, dt.date(year, month_number, 1), feed, filename)
