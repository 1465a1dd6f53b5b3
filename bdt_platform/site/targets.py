"""KPI targets: which metrics the scorecard shows and the value each state should reach.

The file is ``settings.site_targets_path`` (``BDT_SITE_TARGETS``; shipped default
``site/targets.yaml``, which documents the format). :func:`load_targets` checks it against the
metric layer's metrics and says exactly what is wrong (:class:`TargetsError`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bdt_platform.core import partitions as parts

DIRECTIONS = ("at_least", "at_most")


class TargetsError(ValueError):
    """The targets file is invalid: the message names the file, the metric and the problem."""


@dataclass(frozen=True)
class Target:
    metric: str
    target: float
    direction: str
    states: dict[str, float] = field(default_factory=dict)

    def value_for(self, state: str) -> float:
        return self.states.get(state, self.target)

    def misses(self, state: str, value: float | None) -> bool:
        """True when ``value`` is on the wrong side of the state's target (never for no value)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        goal = self.value_for(state)
        return value < goal if self.direction == "at_least" else value > goal


@dataclass(frozen=True)
class Targets:
    scorecard: tuple[str, ...]
    targets: dict[str, Target]


def _number(path: Path, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TargetsError(f"{path}: {where} must be a number, got {value!r}")
    return float(value)


def load_targets(path: Path, metrics: dict) -> Targets:
    """Read and check ``path``; ``metrics`` maps each known metric name to its ``Metric``
    (for names and the default direction)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise TargetsError(f"targets file {path} does not exist (BDT_SITE_TARGETS)") from None
    except yaml.YAMLError as exc:
        raise TargetsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TargetsError(f"{path}: expected a mapping with 'scorecard' and 'targets'")
    unknown_keys = sorted(set(data) - {"scorecard", "targets"})
    if unknown_keys:
        raise TargetsError(f"{path}: unknown key(s) {', '.join(unknown_keys)}; "
                           "expected scorecard and targets")
    known = ", ".join(sorted(metrics))
    scorecard = data.get("scorecard") or []
    if not isinstance(scorecard, list) or not scorecard:
        raise TargetsError(f"{path}: scorecard must be a non-empty list of metric names")
    for name in scorecard:
        if name not in metrics:
            raise TargetsError(f"{path}: scorecard: unknown metric {name!r}; known: {known}")
    raw = data.get("targets") or {}
    if not isinstance(raw, dict):
        raise TargetsError(f"{path}: targets must map metric names to {{target, direction}}")
    targets = {}
    for name, spec in raw.items():
        if name not in metrics:
            raise TargetsError(f"{path}: targets: unknown metric {name!r}; known: {known}")
        if not isinstance(spec, dict) or "target" not in spec:
            raise TargetsError(f"{path}: targets.{name} must be a mapping with a 'target'")
        extra = sorted(set(spec) - {"target", "direction", "states"})
        if extra:
            raise TargetsError(f"{path}: targets.{name}: unknown key(s) {', '.join(extra)}; "
                               "expected target, direction, states")
        default = "at_least" if metrics[name].higher_is_better else "at_most"
        direction = spec.get("direction", default)
        if direction not in DIRECTIONS:
            raise TargetsError(f"{path}: targets.{name}.direction must be at_least or at_most, "
                               f"got {direction!r}")
        states = spec.get("states") or {}
        if not isinstance(states, dict):
            raise TargetsError(f"{path}: targets.{name}.states must map state codes to numbers")
        overrides = {}
        for state, value in states.items():
            if str(state).upper() not in parts.STATES:
                raise TargetsError(f"{path}: targets.{name}.states: unknown state {state!r}")
            overrides[str(state).upper()] = _number(path, f"targets.{name}.states.{state}", value)
        targets[name] = Target(name, _number(path, f"targets.{name}.target", spec["target"]),
                               direction, overrides)
    return Targets(tuple(scorecard), targets)
