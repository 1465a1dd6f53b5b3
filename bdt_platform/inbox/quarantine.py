"""Quarantine at the inbox: files refused before any run (a name that breaks the naming
contract, or a partner, feed or state the partner registry does not allow).

Each is copied byte for byte to ``lake/quarantine/<partner folder>/<file>`` with
``<file>.reason.json`` beside it (the rule, a message saying what to change, the file's checksum
and arrival time) and only then moved out of the inbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bdt_platform.feeds.filenames import BadFileName, parse_drop_name
from bdt_platform.core.inbox_interface import Inbox, InboxFile
from bdt_platform.storage.lake import LakeResource

NAME_RULE = "file_name_contract"


def _feed_from_name(folder: str, name: str) -> str | None:
    """The feed a drop's name names, or None when the name breaks the naming contract."""
    try:
        return parse_drop_name(folder, name).feed
    except BadFileName:
        return None


def quarantine_file(inbox: Inbox, lake: LakeResource, file: InboxFile, reason: str,
                    rule: str | None = None) -> str:
    """Copy a refused file into the lake's quarantine with a reason file, check the copy's
    checksum, and only then move the original out of the inbox. ``rule`` defaults to the
    reason's own (``scan.Refusal.rule``), else the naming contract. Returns the lake path."""
    rule = rule or getattr(reason, "rule", NAME_RULE)
    data = inbox.read_bytes(file.path)
    digest = hashlib.sha256(data).hexdigest()
    where = lake.quarantine(file.folder, file.name, data, {
        "file": file.name,
        "feed": _feed_from_name(file.folder, file.name),
        "partner": file.folder,
        "inbox_path": file.path,
        "inbox_identity": file.identity,
        "sha256": digest,
        "size_bytes": len(data),
        "received_at": dt.datetime.fromtimestamp(file.mtime, dt.timezone.utc).isoformat(),
        "rejected_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "summary": str(reason),
        "failures": [{"rule": rule, "column": None, "count": 1,
                      "message": str(reason), "examples": []}],
    })
    if hashlib.sha256(lake.path(where).read_bytes()).hexdigest() != digest:
        raise OSError(f"lake copy of {file.path} does not match its checksum ({where})")
    inbox.mark_processed(file.path)
    return where


# -- what is in quarantine, and releasing a file --------------------------------------------------
#
# ``bdt quarantine list`` and ``bdt quarantine release`` (docs/partners.md). Releasing puts the
# quarantined bytes back into the inbox where they came from, as they came (the original name,
# the arrival time as the file's modification time, so it counts as complete at once and keeps
# its place among the partition's deliveries), and lands that one file now, as ``bdt ingest``
# would. Loaded: the lake's archive holds the file, so the quarantine copy and its reason go.
# Refused again: the ingest wrote the new reason beside the copy, and the copy stays.

QUARANTINE = "quarantine"
REASON_SUFFIX = ".reason.json"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class QuarantineError(ValueError):
    """A quarantined file that is unknown, named ambiguously, or cannot be released: the
    message (one line) says which and what to do."""


def _when(value: object) -> dt.datetime | None:
    """An ISO time from a reason file (UTC when it names no offset); None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.timezone.utc)


def _one_line(text: object) -> str:
    from bdt_platform.core.pii import mask_ssn

    return " ".join(str(mask_ssn(text)).split())


@dataclass(frozen=True)
class QuarantinedFile:
    """One file in ``lake/quarantine/<partner folder>/`` with what its reason file says."""

    lake_path: str  # quarantine/<partner folder>/<name in the lake>
    partner: str  # the partner folder (the inbox folder it was dropped in)
    stored_name: str  # its name in the lake: the original, or <stem>.<sha12>.<ext>
    reason: dict = field(default_factory=dict, compare=False)  # its .reason.json ({} if none)

    @property
    def reason_path(self) -> str:
        return self.lake_path + REASON_SUFFIX

    @property
    def file(self) -> str:
        """The name it arrived with."""
        return str(self.reason.get("file") or self.stored_name)

    @property
    def inbox_path(self) -> str:
        """Where it came from, and where a release puts it back: ``<partner folder>/<file>``."""
        return f"{self.partner}/{self.file}"

    @property
    def feed(self) -> str | None:
        return self.reason.get("feed") or _feed_from_name(self.partner, self.file)

    @property
    def failures(self) -> list[dict]:
        failures = self.reason.get("failures")
        return [f for f in failures if isinstance(f, dict)] if isinstance(failures, list) else []

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(f.get("rule")) for f in self.failures if f.get("rule")))

    @property
    def summary(self) -> str:
        """Why, in one line (the reason's summary; older reason files have only failures)."""
        if self.reason.get("summary"):
            return _one_line(self.reason["summary"])
        messages = [str(f.get("message")) for f in self.failures if f.get("message")]
        if messages:
            return _one_line("; ".join(messages))
        return self.reason.get("_problem", "no reason recorded")

    @property
    def rejected_at(self) -> dt.datetime | None:
        return _when(self.reason.get("rejected_at"))

    @property
    def received_at(self) -> dt.datetime | None:
        return _when(self.reason.get("received_at"))


def _read_reason(lake: LakeResource, lake_path: str) -> dict:
    target = lake.path(lake_path + REASON_SUFFIX)
    try:
        reason = json.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"_problem": f"no reason file ({lake_path}{REASON_SUFFIX} is missing)"}
    except (OSError, ValueError) as exc:
        return {"_problem": f"reason file unreadable: {' '.join(str(exc).split())}"}
    return reason if isinstance(reason, dict) else {"_problem": "reason file is not an object"}


def quarantined_at(lake: LakeResource, lake_path: str) -> QuarantinedFile:
    """The quarantined file at ``lake_path`` (``quarantine/<partner folder>/<name>``)."""
    parts = lake_path.split("/")
    if len(parts) != 3 or parts[0] != QUARANTINE or not parts[1] or not parts[2]:
        raise QuarantineError(f"{lake_path!r} is not a quarantine path "
                              "(quarantine/<partner folder>/<file>)")
    return QuarantinedFile(lake_path, parts[1], parts[2], _read_reason(lake, lake_path))


def list_quarantined(lake: LakeResource) -> list[QuarantinedFile]:
    """Every file in the lake's quarantine with its reason, newest rejection first (files
    without a readable time last)."""
    root = lake.path(QUARANTINE)
    if not root.exists():
        return []
    found = []
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.name.endswith(REASON_SUFFIX) or item.name.startswith(".") or item.is_dir():
                continue
            lake_path = f"{QUARANTINE}/{folder.name}/{item.name}"
            found.append(QuarantinedFile(lake_path, folder.name, item.name,
                                         _read_reason(lake, lake_path)))
    found.sort(key=lambda q: q.lake_path)
    found.sort(key=lambda q: q.rejected_at or _EPOCH, reverse=True)
    return found


def find_quarantined(lake: LakeResource, name: str) -> QuarantinedFile:
    """The quarantined file ``name`` names: its lake path (``quarantine/<partner>/<file>``, as
    ``bdt quarantine list`` shows it; ``lake/quarantine/...`` as ``bdt ingest`` prints it is
    fine too), or a bare file name found once in the quarantine (its name there or the name it
    arrived with). :class:`QuarantineError` when there is none or more than one."""
    wanted = name.strip().removesuffix(REASON_SUFFIX)
    entries = list_quarantined(lake)
    if "/" in wanted:
        at = wanted.rfind(f"{QUARANTINE}/")
        relative = wanted[at:] if at == 0 or (at > 0 and wanted[at - 1] == "/") else wanted
        if not relative.startswith(f"{QUARANTINE}/"):
            relative = f"{QUARANTINE}/{relative}"  # <partner folder>/<file>
        matches = [e for e in entries if e.lake_path == relative]
    else:
        matches = [e for e in entries if wanted in (e.stored_name, e.file)]
    if not matches:
        raise QuarantineError(f"no quarantined file {name!r} in {lake.path(QUARANTINE)} "
                              "(bdt quarantine list shows them)")
    if len(matches) > 1:
        raise QuarantineError(f"{name!r} names {len(matches)} quarantined files ("
                              + ", ".join(e.lake_path for e in matches)
                              + "); give its lake path")
    return matches[0]


@dataclass
class ReleaseResult:
    """What became of a released file."""

    released: QuarantinedFile  # as it was in quarantine
    inbox_path: str  # where it was put back
    status: str  # loaded | quarantined (refused again) | failed (its run failed)
    detail: str  # the ingest's line for it
    partition: str | None = None
    rows: int | None = None
    quarantined: QuarantinedFile | None = None  # refused again: the copy with its new reason
    removed: list[str] = field(default_factory=list)  # lake paths removed (loaded)

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "loaded" else 1


def _delete(lake: LakeResource, lake_path: str) -> list[str]:
    removed = []
    for relative in (lake_path, lake_path + REASON_SUFFIX):
        target = lake.path(relative)
        if target.exists():
            target.unlink()
            removed.append(relative)
    return removed


def _archived(lake: LakeResource, entry: QuarantinedFile, digest: str) -> str | None:
    """The lake archive's copy of the released file, if it holds one."""
    try:
        name = parse_drop_name(entry.partner, entry.file)
    except BadFileName:
        return None
    suffix = f"_{digest[:12]}_{entry.file}"
    return next((p for p in lake.archived_files(name.feed, name.state, name.month)
                 if p.endswith(suffix)), None)


def _take_back(inbox: Inbox, path: str, data: bytes, echo: Callable[[str], None]) -> None:
    """Remove the released copy from the inbox again, if it is still there as we put it."""
    try:
        if any(f.path == path for f in inbox.list_files()) and inbox.read_bytes(path) == data:
            inbox.remove(path)
    except Exception as exc:  # noqa: BLE001 - the quarantine still holds the file
        echo(f"could not take {path} back out of the inbox ({' '.join(str(exc).split())}); "
             "the next bdt ingest will land it")


def release(defs, instance, inbox: Inbox, lake: LakeResource, warehouse, file: str,
            echo: Callable[[str], None] = print, registry=None) -> ReleaseResult:
    """Process the quarantined ``file`` again (see :func:`find_quarantined` for how it may be
    named): put its bytes back into the inbox as ``<partner folder>/<original name>`` with
    their arrival time, and run ``ingest`` on that one path now (``settle_seconds=0``; no
    case-management extract). ``registry``: the partner registry to check it against (default:
    the one in force, read again now).

    Loaded: the quarantine copy and its reason file are removed (once the lake's archive is
    seen to hold the same bytes). Refused again: the ingest wrote the new reason beside the
    copy, which stays (``result.quarantined``). Its run failed: the file is taken back out of
    the inbox and stays in quarantine. :class:`QuarantineError` (nothing changed) for an
    unknown or ambiguous name, a copy that does not match its recorded checksum, or an inbox
    that already holds a different file at that path."""
    from bdt_platform.core.inbox_interface import drop_path_parts
    from bdt_platform.inbox.ingest import ingest

    entry = find_quarantined(lake, file)
    data = lake.path(entry.lake_path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    recorded = entry.reason.get("sha256")
    if recorded and recorded != digest:
        raise QuarantineError(f"{entry.lake_path} does not match the checksum in its reason file "
                              f"({digest[:12]} != {str(recorded)[:12]}); not released")
    path = entry.inbox_path
    try:
        drop_path_parts(path)
    except ValueError as exc:
        raise QuarantineError(f"{entry.lake_path} cannot go back into the inbox: {exc}") from None
    if any(f.path == path for f in inbox.list_files()) and inbox.read_bytes(path) != data:
        raise QuarantineError(f"the inbox already holds a different {path} (a new delivery?); "
                              "land it first (bdt ingest), then release this one")
    received = entry.received_at
    mtime = received.timestamp() if received is not None else time.time()
    inbox.put(path, data, mtime)
    echo(f"released {entry.lake_path} -> inbox {path} (received "
         f"{received.isoformat() if received else 'now'}); processing it again")
    try:
        result = ingest(defs, instance, inbox, lake, warehouse, None, settle_seconds=0,
                        echo=echo, registry=registry, only_paths={path})
    except BaseException:
        _take_back(inbox, path, data, echo)
        raise
    ours = [f for f in result.files if f.path == path]
    outcome = ours[-1] if ours else None
    if outcome is not None and outcome.status == "loaded":
        done = ReleaseResult(entry, path, "loaded", outcome.detail, outcome.partition,
                             outcome.rows)
        if _archived(lake, entry, digest) is not None:
            done.removed = _delete(lake, entry.lake_path)
        else:
            echo(f"the lake archive does not show {entry.file} ({digest[:12]}); keeping "
                 f"{entry.lake_path}")
        return done
    if outcome is not None and outcome.status == "quarantined":
        found = re.search(r"-> lake/(quarantine/\S+)\s*$", outcome.detail)
        where = found.group(1) if found else entry.lake_path
        again = quarantined_at(lake, where)
        if where != entry.lake_path and lake.path(where).read_bytes() == data:
            _delete(lake, entry.lake_path)  # quarantined again elsewhere, with its new reason
        return ReleaseResult(entry, path, "quarantined", outcome.detail, outcome.partition,
                             quarantined=again)
    _take_back(inbox, path, data, echo)
    if outcome is not None:
        detail = f"{outcome.status}: {outcome.detail}"
    else:
        failures = [f for run in result.runs for f in run.failures()]
        detail = "; ".join(failures)[:300] or "the ingest did not pick it up"
    return ReleaseResult(entry, path, "failed", detail, outcome.partition if outcome else None)
