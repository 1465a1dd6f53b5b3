"""The partner registry: who may send which feed for which states (``partners.yaml``).

Partners are configuration, not code. The registry in force is ``BDT_PARTNERS`` (settings), or
the one shipped beside this module. It is read again whenever the file changes (its size and
modification time are compared on every look), so a partner added by ``bdt partners add`` or by
editing the file is picked up by the next sensor tick or ``bdt ingest`` without a restart.

Format (YAML)::

    partners:
      - name: paagency              # lower-case letters and digits: the inbox folder and the
                                    # first part of its file names
        description: "..."         # who they are, who to call
        feeds: [eligibility, outcomes]
        states: [PA]                # or: all

A registry that breaks any rule is refused as a whole with a :class:`RegistryError` naming the
file, the line and the rule (unknown feed, bad state code, duplicate partner, bad name, ...).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from bdt_platform.feeds.filenames import FILE_FEEDS
from bdt_platform.core.partitions import STATES

#: The registry shipped with the project (used when ``BDT_PARTNERS`` is unset).
DEFAULT_REGISTRY = Path(__file__).with_name("partners.yaml")
ALL_STATES = "all"
NAME_RE = re.compile(r"^[a-z0-9]+$")
_KEYS = {"name", "description", "feeds", "states"}


class RegistryError(ValueError):
    """The registry (or a change to it) breaks a rule; the message names the file and line."""


class NotRegistered(ValueError):
    """A drop the registry does not allow. ``rule`` is ``unknown_partner``,
    ``feed_not_registered`` or ``state_not_registered``; the message says what to add."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Partner:
    name: str
    description: str
    feeds: tuple[str, ...]
    states: frozenset[str] | None  # None: every state
    line: int = 0  # where it is defined in its registry file (1-based; 0 when built in code)

    def sends(self, feed: str, state: str) -> bool:
        return feed in self.feeds and (self.states is None or state in self.states)

    @property
    def states_text(self) -> str:
        return ALL_STATES if self.states is None else ",".join(sorted(self.states))

    def as_yaml(self) -> dict:
        return {"name": self.name, "description": self.description, "feeds": list(self.feeds),
                "states": ALL_STATES if self.states is None else sorted(self.states)}


@dataclass(frozen=True)
class PartnerRegistry:
    partners: tuple[Partner, ...]
    source: str  # the file it was read from

    def get(self, name: str) -> Partner | None:
        return next((p for p in self.partners if p.name == name), None)

    def names(self) -> list[str]:
        return [p.name for p in self.partners]

    def senders(self, feed: str, state: str | None = None) -> list[Partner]:
        """The partners registered for ``feed`` (and ``state``, when given)."""
        return [p for p in self.partners
                if feed in p.feeds and (state is None or p.states is None or state in p.states)]

    def check(self, partner: str, feed: str, state: str) -> Partner:
        """The partner, when it may send ``feed`` for ``state``; else :class:`NotRegistered`
        saying which rule and what to add to the registry."""
        found = self.get(partner)
        if found is None:
            raise NotRegistered(
                "unknown_partner",
                f"unknown partner {partner!r}: not in the partner registry ({self.source}); to "
                f"accept its files register it: bdt partners add {partner} --feed {feed} "
                f"--states {state}")
        if feed not in found.feeds:
            raise NotRegistered(
                "feed_not_registered",
                f"feed {feed!r} not registered for partner {partner!r} (it may send "
                f"{', '.join(found.feeds)}; registry {self.source}:{found.line}); add {feed} to "
                f"its feeds: bdt partners add {partner} --feed {feed}")
        if found.states is not None and state not in found.states:
            raise NotRegistered(
                "state_not_registered",
                f"state {state} not registered for partner {partner!r} (it may send for "
                f"{found.states_text}; registry {self.source}:{found.line}); add {state} to its "
                f"states: bdt partners add {partner} --feed {feed} --states {state}")
        return found


# -- reading ---------------------------------------------------------------------------------------

def _where(source: str, node: yaml.Node | None) -> str:
    return f"{source}:{node.start_mark.line + 1}" if node is not None else source


def _scalar(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _text_list(node: yaml.Node, source: str, what: str) -> list[tuple[str, yaml.Node]]:
    """A YAML sequence of plain values, or one value (``feeds: eligibility``)."""
    if isinstance(node, yaml.ScalarNode):
        items = [node]
    elif isinstance(node, yaml.SequenceNode):
        items = node.value
    else:
        raise RegistryError(f"{_where(source, node)}: {what} must be a list")
    out = []
    for item in items:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise RegistryError(f"{_where(source, item)}: {what} must be plain values")
        out.append((str(item.value).strip(), item))
    return out


def _partner(node: yaml.Node, source: str) -> Partner:
    if not isinstance(node, yaml.MappingNode):
        raise RegistryError(f"{_where(source, node)}: each partner must be a mapping with "
                            f"name, description, feeds and states")
    fields: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = _scalar(key_node)
        if key not in _KEYS:
            raise RegistryError(f"{_where(source, key_node)}: unknown key {key!r} (expected "
                                f"{', '.join(sorted(_KEYS))})")
        if key in fields:
            raise RegistryError(f"{_where(source, key_node)}: key {key!r} given twice")
        fields[key] = value_node
    missing = [k for k in ("name", "feeds") if k not in fields]
    if missing:
        raise RegistryError(f"{_where(source, node)}: partner without {' and '.join(missing)}")
    name = _scalar(fields["name"])
    if name is None or not NAME_RE.match(name):
        raise RegistryError(f"{_where(source, fields['name'])}: bad partner name {name!r} "
                            "(lower-case letters and digits only: it is the inbox folder and "
                            "the start of its file names)")
    feeds = []
    for feed, feed_node in _text_list(fields["feeds"], source, f"{name}: feeds"):
        if feed not in FILE_FEEDS:
            raise RegistryError(f"{_where(source, feed_node)}: partner {name!r}: unknown feed "
                                f"{feed!r} (expected one of {', '.join(FILE_FEEDS)})")
        if feed not in feeds:
            feeds.append(feed)
    if not feeds:
        raise RegistryError(f"{_where(source, fields['feeds'])}: partner {name!r} sends no feed")
    states: frozenset[str] | None = None
    states_node = fields.get("states")
    if states_node is None or _scalar(states_node) == ALL_STATES:
        states = None
    else:
        codes = set()
        for code, code_node in _text_list(states_node, source, f"{name}: states"):
            if code not in STATES:
                raise RegistryError(f"{_where(source, code_node)}: partner {name!r}: bad state "
                                    f"code {code!r} (two upper-case letters, one of the 50 "
                                    "states or DC; or `all`)")
            codes.add(code)
        if not codes:
            raise RegistryError(f"{_where(source, states_node)}: partner {name!r} has no state "
                                "(list its states, or write `all`)")
        states = frozenset(codes)
    description_node = fields.get("description")
    description = "" if description_node is None else str(_scalar(description_node) or "")
    return Partner(name, description.strip(), tuple(feeds), states,
                   node.start_mark.line + 1)


def parse_registry(text: str, source: str) -> PartnerRegistry:
    """The registry in ``text`` (read from ``source``); :class:`RegistryError` naming the line
    of the first rule it breaks."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise RegistryError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if root is None:
        raise RegistryError(f"{source}: empty registry (expected `partners:` and a list)")
    entries = None
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if _scalar(key_node) != "partners":
                raise RegistryError(f"{_where(source, key_node)}: unknown key "
                                    f"{_scalar(key_node)!r} (the registry has one key, partners)")
            entries = value_node
    if not isinstance(entries, yaml.SequenceNode):
        raise RegistryError(f"{_where(source, entries or root)}: expected `partners:` followed "
                            "by a list of partners")
    partners: list[Partner] = []
    for node in entries.value:
        partner = _partner(node, source)
        earlier = next((p for p in partners if p.name == partner.name), None)
        if earlier is not None:
            raise RegistryError(f"{source}:{partner.line}: duplicate partner {partner.name!r} "
                                f"(first defined at line {earlier.line})")
        partners.append(partner)
    return PartnerRegistry(tuple(partners), source)


_CACHE: dict[str, tuple[tuple[int, int], PartnerRegistry]] = {}


def load_registry(path: str | os.PathLike) -> PartnerRegistry:
    """The registry in the file ``path``, read again only when the file changed."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise RegistryError(f"{path}: partner registry not found (BDT_PARTNERS names it)") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(str(path))
    if cached is not None and cached[0] == stamp:
        return cached[1]
    registry = parse_registry(path.read_text(encoding="utf-8"), str(path))
    _CACHE[str(path)] = (stamp, registry)
    return registry


def default_registry() -> PartnerRegistry:
    """The registry shipped with the project (what ``BDT_PARTNERS`` unset means)."""
    return load_registry(DEFAULT_REGISTRY)


# -- writing ---------------------------------------------------------------------------------------

def render_registry(partners: Iterable[Partner], header: str = "") -> str:
    """The registry file's text for ``partners`` (``header`` comment lines kept on top)."""
    body = yaml.safe_dump({"partners": [p.as_yaml() for p in partners]}, sort_keys=False,
                          default_flow_style=None, allow_unicode=True, width=100)
    return header + body


def _header(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def add_partner(path: str | os.PathLike, name: str, feeds: Sequence[str],
                states: Sequence[str] | None, description: str | None = None,
                default: str | os.PathLike = DEFAULT_REGISTRY) -> tuple[Partner, bool]:
    """Register ``name`` for ``feeds`` and ``states`` (None: every state) in the registry at
    ``path``, created from ``default`` when it does not exist yet. A partner already registered
    is extended: the feeds and states are added to its own. Returns the partner as registered
    and whether it is new. The file is validated before it replaces the old one (written to a
    temporary file and renamed), so a refused change leaves the registry as it was."""
    path = Path(path)
    source = path if path.exists() else Path(default)
    text = source.read_text(encoding="utf-8")
    registry = parse_registry(text, str(source))
    if not NAME_RE.match(name or ""):
        raise RegistryError(f"bad partner name {name!r} (lower-case letters and digits only)")
    bad_feeds = [f for f in feeds if f not in FILE_FEEDS]
    if bad_feeds or not feeds:
        raise RegistryError(f"unknown feed {', '.join(bad_feeds) or '(none given)'!s} (expected "
                            f"one of {', '.join(FILE_FEEDS)})")
    if states is not None:
        bad_states = [s for s in states if s not in STATES]
        if bad_states or not states:
            raise RegistryError(f"bad state code {', '.join(bad_states) or '(none given)'} "
                                "(two upper-case letters, one of the 50 states or DC)")
    existing = registry.get(name)
    if existing is None:
        partner = Partner(name, description or "", tuple(dict.fromkeys(feeds)),
                          None if states is None else frozenset(states))
        partners = [*registry.partners, partner]
    else:
        merged_states = (None if existing.states is None or states is None
                         else existing.states | frozenset(states))
        partner = Partner(name, description if description is not None else existing.description,
                          tuple(dict.fromkeys([*existing.feeds, *feeds])), merged_states,
                          existing.line)
        partners = [partner if p.name == name else p for p in registry.partners]
    new_text = render_registry(partners, _header(text))
    parse_registry(new_text, str(path))  # what we write must read back
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(new_text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return partner, existing is None


# -- the Dagster resource ----------------------------------------------------------------------------


class PartnerRegistryResource(dg.ConfigurableResource):
    """The registry in force, for the sensor and the load runs: read again when the file
    changes, so an edit is picked up at the next look without restarting anything."""

    path: str = str(DEFAULT_REGISTRY)

    def registry(self) -> PartnerRegistry:
        return load_registry(self.path)
