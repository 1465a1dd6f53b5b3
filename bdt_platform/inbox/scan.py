"""Deciding what in an inbox listing is ready to land: complete, well named, registered, newest
first.

Pure functions over a listing and the partner registry, shared by ``bdt ingest`` and the sensor.
A file is refused (to be quarantined) when its name breaks the naming contract
(``file_name_contract``) or the registry does not let its partner send that feed for that state
(``unknown_partner``, ``feed_not_registered``, ``state_not_registered``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from bdt_platform.feeds.filenames import BadFileName, DropName, parse_drop_name
from bdt_platform.core.inbox_interface import InboxFile
from bdt_platform.inbox.partners import NotRegistered, PartnerRegistry, default_registry
from bdt_platform.inbox.quarantine import NAME_RULE


class Refusal(str):
    """Why a file is refused: the one-line reason (this string) and the rule it breaks."""

    rule: str

    def __new__(cls, reason: str, rule: str = NAME_RULE) -> "Refusal":
        refusal = super().__new__(cls, reason)
        refusal.rule = rule
        return refusal


@dataclass(frozen=True)
class Drop:
    """A complete, well-named file: what it is and where it goes."""

    file: InboxFile
    name: DropName


@dataclass
class ScanResult:
    ready: list[Drop] = field(default_factory=list)
    waiting: list[InboxFile] = field(default_factory=list)  # maybe still being written
    bad_names: list[tuple[InboxFile, Refusal]] = field(default_factory=list)

    def by_feed(self) -> dict[str, dict[str, list[Drop]]]:
        """``feed -> partition key -> drops`` (oldest first, so the newest is last and wins: for
        each partner, its newest file replaces that partner's rows)."""
        grouped: dict[str, dict[str, list[Drop]]] = {}
        for drop in sorted(self.ready, key=lambda d: (d.file.mtime, d.file.name)):
            grouped.setdefault(drop.name.feed, {}).setdefault(drop.name.partition_key, []).append(drop)
        return grouped


def is_complete(file: InboxFile, previous_sizes: Mapping[str, int] | None, now: float,
                settle_seconds: float) -> bool:
    """A file is complete when it has a ``.done`` marker, its size did not change since the
    previous look, or (with no previous look) it has not been modified for ``settle_seconds``."""
    if file.has_done_marker:
        return True
    if previous_sizes is not None and file.path in previous_sizes:
        return previous_sizes[file.path] == file.size
    return now - file.mtime >= settle_seconds


def scan(listing: list[InboxFile], previous_sizes: Mapping[str, int] | None = None,
         now: float | None = None, settle_seconds: float = 2.0,
         registry: PartnerRegistry | None = None) -> ScanResult:
    """Sort ``listing`` into ready, waiting and refused files. ``registry``: the partner
    registry in force (default: the one shipped with the project)."""
    now = time.time() if now is None else now
    registry = default_registry() if registry is None else registry
    result = ScanResult()
    for file in listing:
        try:
            name = parse_drop_name(file.folder, file.name)
            registry.check(name.partner, name.feed, name.state)
        except BadFileName as exc:
            result.bad_names.append((file, Refusal(str(exc))))
            continue
        except NotRegistered as exc:
            result.bad_names.append((file, Refusal(str(exc), exc.rule)))
            continue
        if is_complete(file, previous_sizes, now, settle_seconds):
            result.ready.append(Drop(file, name))
        else:
            result.waiting.append(file)
    return result
