"""The outreach configuration: mail budgets, the random-control share, the do-not-contact list,
the readout's attribution window, the response model's label window and promotion margin, and
the nudge campaigns.

Read from a YAML file (the shipped default is ``bdt_platform/outreach/outreach.yaml``) and
validated whole before anything is computed or sent: every error names the file, the line (or
the CSV row) and the rule broken, e.g. ``outreach.yaml:37: campaign 'x': arm weights sum to
0.9, not 1``. A run that reads a bad file fails before it writes a table or sends a file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from bdt_platform.core import partitions as parts

DEFAULT_PATH = Path(__file__).with_name("outreach.yaml")
#: The person-level outcomes a readout can measure (``readout.METRICS`` defines each).
KNOWN_METRICS = ("called", "applied", "approved", "replied", "opted_out")
CHANNELS = ("sms", "call")
_TOKEN = re.compile(r"^tok_[0-9a-f]{32}$")
_CAMPAIGN_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ARM = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
WEIGHT_TOLERANCE = 1e-9


class OutreachConfigError(ValueError):
    """The outreach configuration breaks a rule; the message names the file, line and rule."""


@dataclass(frozen=True)
class Campaign:
    """A nudge campaign: who is in it (states x months, optionally only people eligible for
    ``program``), its arms and their weights, and what the readout measures."""

    id: str
    channel: str
    states: tuple[str, ...]
    months: tuple[dt.date, ...]
    arms: tuple[tuple[str, float], ...]  # (arm, weight), in the order configured
    control_arm: str
    primary_metric: str
    guardrail_metrics: tuple[str, ...] = ()
    program: str | None = None
    line: int = 0

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.primary_metric, *[m for m in self.guardrail_metrics
                                       if m != self.primary_metric])

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.arms)

    def covers(self, state: str, month: dt.date) -> bool:
        return state in self.states and month in self.months


@dataclass(frozen=True)
class OutreachConfig:
    source: str
    history_days: int = 90
    control_share: float = 0.10
    budget_default: int = 250
    budget_states: dict[str, int] = field(default_factory=dict)
    budget_partitions: dict[tuple[str, dt.date], int] = field(default_factory=dict)
    do_not_contact: dict[str, str] = field(default_factory=dict)  # token -> reason
    do_not_contact_source: str = ""
    attribution_days: int = 30
    alpha: float = 0.05
    srm_alpha: float = 0.001
    campaigns: tuple[Campaign, ...] = ()
    # The response model (``bdt_platform/ml``): label window, promotion rule, history needed.
    label_days: int = 28
    promotion_margin: float = 0.02
    min_train_months: int = 1

    def budget(self, state: str, month: dt.date) -> int:
        """Pieces the print budget allows for ``state`` x ``month``."""
        if (state, month) in self.budget_partitions:
            return self.budget_partitions[(state, month)]
        return self.budget_states.get(state, self.budget_default)

    def campaign(self, campaign_id: str) -> Campaign | None:
        return next((c for c in self.campaigns if c.id == campaign_id), None)

    def campaigns_for(self, state: str, month: dt.date) -> list[Campaign]:
        return [c for c in self.campaigns if c.covers(state, month)]


class _LineLoader(yaml.SafeLoader):
    """Safe YAML whose mappings remember the line they start on (``__line__``)."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _number(value, where: str, what: str, *, low: float, high: float, integer: bool = False):
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise OutreachConfigError(f"{where}: {what} must be {kind} between {low:g} and "
                                  f"{high:g}, got {value!r}")
    return value


def _section(data: dict, name: str, where: str) -> dict:
    section = data.get(name, {})
    if section is None:
        return {"__line__": data.get("__line__", 0)}
    if not isinstance(section, dict):
        raise OutreachConfigError(f"{where}: '{name}' must be a mapping")
    return section


def _check_keys(section: dict, allowed: set[str], where: str, what: str) -> None:
    unknown = sorted(set(section) - allowed - {"__line__"})
    if unknown:
        raise OutreachConfigError(f"{where}: unknown key(s) in {what}: {', '.join(unknown)} "
                                  f"(allowed: {', '.join(sorted(allowed))})")


def _months(value, where: str, what: str) -> tuple[dt.date, ...]:
    try:
        if isinstance(value, list):
            months = [parts.parse_month(str(v)) for v in value]
        else:
            months = parts.month_range(str(value))
    except ValueError as exc:
        raise OutreachConfigError(f"{where}: {what}: {exc}") from None
    if not months:
        raise OutreachConfigError(f"{where}: {what}: no months")
    return tuple(sorted(set(months)))


def _states(value, where: str, what: str) -> tuple[str, ...]:
    try:
        states = (parts.parse_states(value) if isinstance(value, str)
                  else parts.parse_states(",".join(map(str, value or []))))
    except ValueError as exc:
        raise OutreachConfigError(f"{where}: {what}: {exc}") from None
    if not states:
        raise OutreachConfigError(f"{where}: {what}: no states")
    return tuple(states)


def _campaign(item, source: str) -> Campaign:
    if not isinstance(item, dict):
        raise OutreachConfigError(f"{source}: each campaign must be a mapping")
    where = f"{source}:{item.get('__line__', 0)}"
    _check_keys(item, {"id", "channel", "states", "months", "arms", "control_arm",
                       "primary_metric", "guardrail_metrics", "program"}, where, "a campaign")
    cid = item.get("id")
    if not isinstance(cid, str) or not _CAMPAIGN_ID.match(cid):
        raise OutreachConfigError(f"{where}: campaign id must be lower-case letters, digits, '-' "
                                  f"or '_' (at most 64), got {cid!r}")
    label = f"campaign {cid!r}"
    channel = item.get("channel")
    if channel not in CHANNELS:
        raise OutreachConfigError(f"{where}: {label}: channel must be one of "
                                  f"{', '.join(CHANNELS)}, got {channel!r}")
    for required in ("states", "months", "arms", "primary_metric"):
        if item.get(required) in (None, "", [], {}):
            raise OutreachConfigError(f"{where}: {label}: '{required}' is required")
    arms_node = item["arms"]
    if not isinstance(arms_node, dict):
        raise OutreachConfigError(f"{where}: {label}: arms must map arm name -> weight")
    arms = []
    for arm, weight in arms_node.items():
        if arm == "__line__":
            continue
        if not isinstance(arm, str) or not _ARM.match(arm):
            raise OutreachConfigError(f"{where}: {label}: arm name {arm!r} must be lower-case "
                                      "letters, digits or '_'")
        _number(weight, where, f"{label}: weight of arm {arm!r}", low=0, high=1)
        if weight <= 0:
            raise OutreachConfigError(f"{where}: {label}: weight of arm {arm!r} must be above 0")
        arms.append((arm, float(weight)))
    if len(arms) < 2:
        raise OutreachConfigError(f"{where}: {label}: an A/B test needs at least two arms")
    total = math.fsum(w for _, w in arms)
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise OutreachConfigError(f"{where}: {label}: arm weights sum to {total:g}, not 1")
    control = item.get("control_arm", "control")
    if control not in dict(arms):
        raise OutreachConfigError(f"{where}: {label}: control_arm {control!r} is not one of its "
                                  f"arms ({', '.join(a for a, _ in arms)})")
    guardrails = item.get("guardrail_metrics") or []
    if isinstance(guardrails, str):
        guardrails = [guardrails]
    for metric in [item["primary_metric"], *guardrails]:
        if metric not in KNOWN_METRICS:
            raise OutreachConfigError(f"{where}: {label}: unknown metric {metric!r} (known: "
                                      f"{', '.join(KNOWN_METRICS)})")
    program = item.get("program")
    if program is not None:
        from bdt_platform.feeds.contracts import PROGRAMS  # the contract's program codes
        if str(program).upper() not in PROGRAMS:
            raise OutreachConfigError(f"{where}: {label}: unknown program {program!r} (known: "
                                      f"{', '.join(PROGRAMS)})")
        program = str(program).upper()
    return Campaign(id=cid, channel=channel,
                    states=_states(item["states"], where, f"{label}: states"),
                    months=_months(item["months"], where, f"{label}: months"),
                    arms=tuple(arms), control_arm=control,
                    primary_metric=item["primary_metric"], guardrail_metrics=tuple(guardrails),
                    program=program, line=int(item.get("__line__", 0)))


def _check_overlaps(campaigns: list[Campaign], source: str) -> None:
    for i, a in enumerate(campaigns):
        for b in campaigns[:i]:
            if a.id == b.id:
                raise OutreachConfigError(f"{source}:{a.line}: duplicate campaign id {a.id!r} "
                                          f"(first defined at line {b.line})")
            shared = [(s, m) for s in a.states if s in b.states for m in a.months
                      if m in b.months]
            if shared:
                s, m = shared[0]
                raise OutreachConfigError(
                    f"{source}:{a.line}: campaign {a.id!r} overlaps campaign {b.id!r} (line "
                    f"{b.line}) in {len(shared)} state x month(s), first {s} {m:%Y-%m}: two "
                    "campaigns would reach the same people; give them different states or "
                    "months")


def parse_do_not_contact(text: str, source: str) -> dict[str, str]:
    """``person_token,reason[,added_on]`` rows -> {token: reason}; errors name file and row."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return {}
    if "person_token" not in reader.fieldnames:
        raise OutreachConfigError(f"{source}:1: the header must name a person_token column "
                                  f"(got {', '.join(reader.fieldnames)})")
    found: dict[str, str] = {}
    for row_number, row in enumerate(reader, start=2):
        token = (row.get("person_token") or "").strip()
        if not _TOKEN.match(token):
            raise OutreachConfigError(f"{source}:{row_number}: person_token must be tok_ and 32 "
                                      f"lower-case hex characters (a person token, never an SSN "
                                      f"or name), got {token[:8]!r}...")
        found[token] = (row.get("reason") or "").strip() or "do_not_contact"
    return found


def parse_config(text: str, source: str, base_dir: Path | None = None) -> OutreachConfig:
    """The configuration in ``text`` (read from ``source``); :class:`OutreachConfigError`."""
    try:
        data = yaml.load(text, Loader=_LineLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise OutreachConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") \
            from None
    if not isinstance(data, dict):
        raise OutreachConfigError(f"{source}:1: the file must be a mapping")
    _check_keys(data, {"mail", "readout", "model", "campaigns"}, f"{source}:1", "the file")
    mail = _section(data, "mail", source)
    where = f"{source}:{mail.get('__line__', 1)}"
    _check_keys(mail, {"history_days", "control_share", "budget", "do_not_contact"}, where,
                "mail")
    history_days = _number(mail.get("history_days", 90), where, "mail.history_days", low=0,
                           high=3650, integer=True)
    control_share = float(_number(mail.get("control_share", 0.10), where, "mail.control_share",
                                  low=0, high=1))
    budget = _section(mail, "budget", where)
    bwhere = f"{source}:{budget.get('__line__', mail.get('__line__', 1))}"
    _check_keys(budget, {"default", "states", "partitions"}, bwhere, "mail.budget")
    default = _number(budget.get("default", 250), bwhere, "mail.budget.default", low=0,
                      high=10_000_000, integer=True)
    states: dict[str, int] = {}
    for state, pieces in (budget.get("states") or {}).items():
        if state == "__line__":
            continue
        if state not in parts.STATES:
            raise OutreachConfigError(f"{bwhere}: mail.budget.states: unknown state {state!r}")
        states[state] = _number(pieces, bwhere, f"mail.budget.states.{state}", low=0,
                                high=10_000_000, integer=True)
    partitions: dict[tuple[str, dt.date], int] = {}
    for key, pieces in (budget.get("partitions") or {}).items():
        if key == "__line__":
            continue
        try:
            state, month = parts.split_key(str(key))
            if state not in parts.STATES:
                raise ValueError
            month = parts.month_start(month)
        except ValueError:
            raise OutreachConfigError(f"{bwhere}: mail.budget.partitions: {key!r} is not a "
                                      "partition key like '2024-03-01|PA'") from None
        partitions[(state, month)] = _number(pieces, bwhere, f"mail.budget.partitions.{key}",
                                             low=0, high=10_000_000, integer=True)
    dnc, dnc_source = {}, ""
    if mail.get("do_not_contact"):
        path = Path(str(mail["do_not_contact"]))
        if not path.is_absolute():
            path = (base_dir or Path(".")) / path
        dnc_source = str(path)
        if not path.exists():
            raise OutreachConfigError(f"{where}: mail.do_not_contact: {path} does not exist")
        dnc = parse_do_not_contact(path.read_text(encoding="utf-8-sig"), str(path))
    readout = _section(data, "readout", source)
    rwhere = f"{source}:{readout.get('__line__', 1)}"
    _check_keys(readout, {"attribution_days", "alpha", "srm_alpha"}, rwhere, "readout")
    attribution = _number(readout.get("attribution_days", 30), rwhere,
                          "readout.attribution_days", low=1, high=365, integer=True)
    alpha = float(_number(readout.get("alpha", 0.05), rwhere, "readout.alpha", low=1e-6,
                          high=0.5))
    srm_alpha = float(_number(readout.get("srm_alpha", 0.001), rwhere, "readout.srm_alpha",
                              low=1e-12, high=0.5))
    model = _section(data, "model", source)
    mwhere = f"{source}:{model.get('__line__', 1)}"
    _check_keys(model, {"label_days", "promotion_margin", "min_train_months"}, mwhere, "model")
    label_days = _number(model.get("label_days", 28), mwhere, "model.label_days", low=1,
                         high=365, integer=True)
    margin = float(_number(model.get("promotion_margin", 0.02), mwhere,
                           "model.promotion_margin", low=0, high=1))
    min_train = _number(model.get("min_train_months", 1), mwhere, "model.min_train_months",
                        low=1, high=120, integer=True)
    items = data.get("campaigns") or []
    if not isinstance(items, list):
        raise OutreachConfigError(f"{source}: 'campaigns' must be a list")
    campaigns = [_campaign(item, source) for item in items]
    _check_overlaps(campaigns, source)
    return OutreachConfig(source=source, history_days=history_days, control_share=control_share,
                          budget_default=default, budget_states=states,
                          budget_partitions=partitions, do_not_contact=dnc,
                          do_not_contact_source=dnc_source, attribution_days=attribution,
                          alpha=alpha, srm_alpha=srm_alpha, campaigns=tuple(campaigns),
                          label_days=label_days, promotion_margin=margin,
                          min_train_months=min_train)


def load_config(path: str | Path | None = None) -> OutreachConfig:
    """The configuration at ``path`` (default: the shipped ``outreach.yaml``)."""
    path = Path(path) if path else DEFAULT_PATH
    if not path.exists():
        raise OutreachConfigError(f"{path}: the outreach configuration does not exist")
    return parse_config(path.read_text(encoding="utf-8"), str(path), base_dir=path.parent)


class OutreachConfigResource(dg.ConfigurableResource):
    """Where the outreach configuration is read from (default: the shipped file)."""

    path: str = str(DEFAULT_PATH)

    def load(self) -> OutreachConfig:
        try:
            return load_config(self.path)
        except OutreachConfigError as exc:
            raise dg.Failure(f"outreach configuration refused, nothing computed or sent: {exc}")
