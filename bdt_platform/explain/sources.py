"""Which source records stand behind a metric, read back from the files archived in the lake.

The same selection the report's ledger makes from the marts, made here from one archived source
file, so a change in the ledger can be traced to the file that brought it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bdt_platform.feeds import csv_reader, decoding
from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.storage.lake import LakeResource


@dataclass(frozen=True)
class MetricSource:
    feed: str
    records: Callable[[pd.DataFrame], dict[str, float]]


def _count(ids: pd.Series) -> dict[str, float]:
    return {record: 1.0 for record in ids}


def _decisions(frame: pd.DataFrame, decision: str, amount: bool = False) -> dict[str, float]:
    chosen = frame[frame["decision"] == decision]
    ids = chosen["application_id"] + ":" + chosen["program"]
    values = pd.to_numeric(chosen["monthly_benefit_usd"]) if amount else pd.Series(1.0, chosen.index)
    return dict(zip(ids, values.astype(float)))


METRIC_SOURCES: dict[str, MetricSource] = {
    "pieces_mailed": MetricSource("mailreturns", lambda f: _count(f["mail_piece_id"])),
    "people_nudged": MetricSource(
        "nudges", lambda f: _count(f.loc[f["event_type"] == "sent", "recipient_key"].unique())),
    "calls": MetricSource("calls", lambda f: _count(f["call_id"])),
    "applications": MetricSource("applications", lambda f: _count(f["application_id"])),
    "approvals": MetricSource("outcomes", lambda f: _decisions(f, "approved")),
    "benefit_usd_monthly": MetricSource("outcomes", lambda f: _decisions(f, "approved", True)),
}


def source_records(lake: LakeResource, metric: str, file: dict | None) -> dict[str, float]:
    """``record id -> amount`` behind ``metric`` in one archived file a feed partition held
    (an entry of a materialization's ``sources``)."""
    if not file or not file.get("archive_path"):
        return {}
    source = METRIC_SOURCES[metric]
    _, data = lake.read_archived(file["archive_path"])
    spec = ALL_SPECS[source.feed]
    frame = csv_reader.read_text_frame(decoding.decode(data, file["file"]), spec)
    return source.records(frame)
