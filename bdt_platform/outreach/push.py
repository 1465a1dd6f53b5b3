"""Sending a vendor file once: the lake keeps the file and, after a successful push, a receipt.

``push_once`` writes the file to ``lake/outbox/<vendor>/<file>`` (what we sent, byte for byte),
then, unless ``lake/outbox/<vendor>/<file>.sent.json`` already exists, publishes it to the
outbox (temporary name, verified, renamed: the vendor never sees half a file) and writes the
receipt. A re-run therefore sends nothing twice; a push that failed (server down, refused
mid-upload) leaves no receipt and is retried by the next run. A list that changed after it was
sent is not sent again: the result says so (``changed_after_sending``) and the old receipt stays.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from bdt_platform.outbox.base import Outbox, OutboxReceipt
from bdt_platform.storage.lake import LakeResource


@dataclass(frozen=True)
class PushResult:
    status: str  # "sent" or "already_sent"
    lake_path: str
    sha256: str
    receipt: dict
    changed_after_sending: bool = False


def lake_paths(lake: LakeResource, vendor: str, filename: str):
    folder = lake.path("outbox", vendor)
    return folder, folder / filename, folder / f"{filename}.sent.json"


def push_once(lake: LakeResource, outbox: Outbox, vendor: str, filename: str,
              data: bytes) -> PushResult:
    """Keep ``data`` in the lake and publish it to ``vendor``'s outbox unless already sent.
    Raises what ``outbox.publish`` raises (``OutboxUnavailable``): nothing is recorded then."""
    folder, copy, sent = lake_paths(lake, vendor, filename)
    sha = hashlib.sha256(data).hexdigest()
    relative = f"outbox/{vendor}/{filename}"
    if sent.exists():
        receipt = json.loads(sent.read_text())
        return PushResult("already_sent", relative, receipt["sha256"], receipt,
                          changed_after_sending=receipt["sha256"] != sha)
    folder.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(data)
    published: OutboxReceipt = outbox.publish(vendor, filename, data)
    receipt = {**published.as_metadata(), "sha256": published.sha256,
               "sent_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    sent.write_text(json.dumps(receipt, indent=2))
    return PushResult("sent", relative, sha, receipt)
