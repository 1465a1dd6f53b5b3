"""What a pieces budget would buy, before it is spent: pure functions (no warehouse, no Dagster).

Inputs, for one month: the *pool* of each state (the people the mail-list rules keep before the
budget cut, ``rules.select_mail_list`` with no budget), each with the response model's score
(the chance of applying within ``model.label_days`` of the month's mailing) and their place in
the random-control lottery; a total budget; and a split rule (``SPLITS``):

* ``current``: each state's configured budget (``mail.budget``), scaled to the total;
* ``proportional``: the total shared in proportion to each state's pool;
* ``ranked``: one national list by score, best first; a state gets the pieces of its people in
  the national top ``budget``.

Within a state the pieces go to people as the mail list gives them (``choose``): the
``mail.control_share`` lottery first, the rest by rank. A state never gets more pieces than its
pool has people (``pieces`` <= ``allocated``); what is left is not spent.

The forecast of a set of chosen people (``forecast``): applicants are a sum of independent
Bernoulli(score) draws (Poisson-binomial): its expectation is the sum of the scores and its
interval the equal-tailed quantiles of its exact distribution (up to ``EXACT_MAX_PEOPLE``
people; beyond, the normal approximation). Approvals are the applicants thinned by the approval
rate measured on earlier lists (approved / applied), whose uncertainty is its Jeffreys posterior
Beta(approved + 1/2, applied - approved + 1/2): given the applicants, approvals are
beta-binomial. When the model's held-out month shows it mis-calibrated (``calibration``), the
scores are multiplied by the held-out observed / expected ratio, mixed over that ratio's own
uncertainty. Nothing is random: the same inputs give the same numbers. No people, no pieces:
0 applicants, interval [0, 0].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# scipy loads where a distribution is computed, not with the definitions (~1 s per process).

SPLITS = ("current", "proportional", "ranked")
#: Up to this many people the applicants' distribution is computed exactly.
EXACT_MAX_PEOPLE = 5000
#: Points of the calibration ratio's posterior the forecast is mixed over, when corrected.
CALIBRATION_POINTS = 9
#: Columns of a pool (one row per person the rules keep, before the budget cut).
POOL_COLUMNS = ["state", "person_token", "score", "rank", "lottery"]


@dataclass(frozen=True)
class Calibration:
    """The model on its held-out month: ``observed`` applicants among its candidates,
    ``expected`` (the sum of their scores) and ``variance`` (the sum of p(1 - p))."""

    observed: int
    expected: float
    variance: float
    level: float = 0.95

    @property
    def ratio(self) -> float:
        return self.observed / self.expected if self.expected > 0 else float("nan")

    @property
    def biased(self) -> bool:
        """The observed count is outside the model's own ``level`` interval for it (normal
        approximation of the Poisson-binomial): the scores are too high or too low."""
        if self.expected <= 0 or self.variance <= 0:
            return False
        from scipy import stats

        z = stats.norm.ppf(0.5 + self.level / 2)
        return bool(abs(self.observed - self.expected) > z * math.sqrt(self.variance))

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(factors, weights) the scores are multiplied by: 1 when calibrated; else equally
        weighted quantiles of the ratio's posterior, Gamma(observed + 1/2) / expected."""
        if not self.biased:
            return np.array([1.0]), np.array([1.0])
        from scipy import stats

        u = (np.arange(CALIBRATION_POINTS) + 0.5) / CALIBRATION_POINTS
        factors = stats.gamma.ppf(u, self.observed + 0.5) / self.expected
        return factors, np.full(CALIBRATION_POINTS, 1.0 / CALIBRATION_POINTS)


@dataclass(frozen=True)
class ApprovalRate:
    """Of the people on earlier lists who applied (within the label window), those with an
    application approved."""

    approved: int
    applied: int

    @property
    def rate(self) -> float:
        return self.approved / self.applied if self.applied else float("nan")

    @property
    def known(self) -> bool:
        return self.applied > 0


@dataclass(frozen=True)
class Forecast:
    people: int
    expected_applied: float
    applied_low: int
    applied_high: int
    expected_approved: float
    approved_low: float
    approved_high: float

    def as_dict(self) -> dict:
        return {"pieces": self.people, "expected_applied": self.expected_applied,
                "applied_low": self.applied_low, "applied_high": self.applied_high,
                "expected_approved": self.expected_approved,
                "approved_low": self.approved_low, "approved_high": self.approved_high}


# --- who gets the pieces ---------------------------------------------------------------------

def _largest_remainder(total: int, weights: dict[str, float]) -> dict[str, int]:
    """``total`` whole pieces shared in proportion to ``weights`` (Hamilton's method: floors,
    then the largest remainders, ties in key order): they sum to ``total`` exactly."""
    states = list(weights)
    w = np.array([max(0.0, float(weights[s])) for s in states])
    if total <= 0 or not states:
        return {s: 0 for s in states}
    if w.sum() <= 0:
        w = np.ones(len(states))
    exact = total * w / w.sum()
    base = np.floor(exact).astype(int)
    left = int(total - base.sum())
    order = sorted(range(len(states)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[:left]:
        base[i] += 1
    return {s: int(n) for s, n in zip(states, base)}


def allocate(budget: int, split: str, pools: pd.DataFrame,
             configured: dict[str, int] | None = None) -> dict[str, int]:
    """Pieces per state of ``pools``' states (every state gets a key). ``configured``: the
    states' configured budgets (for ``current``). The allocations sum to ``budget``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if budget < 0:
        raise ValueError(f"the budget must be 0 or more pieces, got {budget}")
    states = list(dict.fromkeys(pools["state"]))
    if split == "current":
        configured = configured or {}
        return _largest_remainder(int(budget), {s: configured.get(s, 0) for s in states})
    sizes = pools["state"].value_counts()
    if split == "proportional":
        return _largest_remainder(int(budget), {s: int(sizes.get(s, 0)) for s in states})
    ranked = national_order(pools).head(int(budget))
    counts = ranked["state"].value_counts()
    out = {s: int(counts.get(s, 0)) for s in states}
    # A budget beyond everyone: the rest is shared as the pools are (it stays unspent).
    extra = int(budget) - sum(out.values())
    if extra > 0:
        for state, n in _largest_remainder(extra, {s: int(sizes.get(s, 0))
                                                   for s in states}).items():
            out[state] += n
    return out


def national_order(pools: pd.DataFrame) -> pd.DataFrame:
    """Every state's pool in one list: highest score first, then each state's own rank
    (which breaks its ties), then state."""
    return pools.sort_values(["score", "rank", "state"], ascending=[False, True, True],
                             kind="stable", na_position="last")


def choose(pool: pd.DataFrame, pieces: int, control_share: float) -> pd.DataFrame:
    """The people of one state's ``pool`` the mail list mails with ``pieces``: the lottery's
    ``round(pieces x control_share)`` lowest ``lottery`` draws, then the best ``rank`` of the
    rest (``rules.select_mail_list``'s order); at most the whole pool."""
    pieces = max(0, int(pieces))
    n_control = min(len(pool), int(round(pieces * control_share)))
    control = pool.nsmallest(n_control, "lottery") if n_control else pool.head(0)
    rest = pool[~pool["person_token"].isin(control["person_token"])].sort_values("rank")
    chosen = pd.concat([control, rest.head(max(0, pieces - n_control))])
    return chosen.sort_values("rank")


# --- what they would do ----------------------------------------------------------------------

def poisson_binomial_pmf(p: np.ndarray) -> np.ndarray:
    """P(sum of independent Bernoulli(p_i) = k), k = 0..n, exactly (dynamic programming)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    pmf = np.zeros(len(p) + 1)
    pmf[0] = 1.0
    for i, pi in enumerate(p, start=1):
        pmf[1:i + 1] = pmf[1:i + 1] * (1.0 - pi) + pmf[0:i] * pi
        pmf[0] *= 1.0 - pi
    return pmf


def _quantiles(pmf: np.ndarray, level: float) -> tuple[int, int]:
    cdf = np.cumsum(pmf)
    tail = (1.0 - level) / 2
    low = int(np.searchsorted(cdf, tail - 1e-12, side="left"))
    high = int(np.searchsorted(cdf, 1.0 - tail - 1e-12, side="left"))
    return low, min(high, len(pmf) - 1)


def _approvals_pmf(applied_pmf: np.ndarray, rate: ApprovalRate) -> np.ndarray:
    """P(approvals = k): given a applicants, beta-binomial(a, approved + 1/2, the rest + 1/2)."""
    a_max = len(applied_pmf) - 1
    alpha, beta = rate.approved + 0.5, rate.applied - rate.approved + 0.5
    from scipy import stats

    keep = np.flatnonzero(applied_pmf > 1e-15)
    out = np.zeros(a_max + 1)
    k = np.arange(a_max + 1)
    for a in keep:
        out[: a + 1] += applied_pmf[a] * stats.betabinom.pmf(k[: a + 1], a, alpha, beta)
    return out / out.sum()


def _normal_interval(mean: float, variance: float, level: float) -> tuple[float, float]:
    from scipy import stats

    z = stats.norm.ppf(0.5 + level / 2)
    sd = math.sqrt(max(variance, 0.0))
    return max(0.0, math.floor(mean - z * sd)), math.ceil(mean + z * sd)


def forecast(scores, rate: ApprovalRate, calibration: Calibration | None = None,
             level: float = 0.95) -> Forecast:
    """Expected applicants and approvals among people with ``scores``, with ``level``
    intervals (see the module doc). Approvals are NaN when no earlier applicant is known."""
    p = np.asarray(scores, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("every person needs a score")
    n = len(p)
    factors, weights = (calibration.factors() if calibration is not None
                        else (np.array([1.0]), np.array([1.0])))
    nan = float("nan")
    if n == 0:
        zero = 0.0 if rate.known else nan
        return Forecast(0, 0.0, 0, 0, zero, zero, zero)
    qs = [np.clip(p * f, 0.0, 1.0) for f in factors]
    expected = float(sum(w * q.sum() for w, q in zip(weights, qs)))
    if n <= EXACT_MAX_PEOPLE:
        pmf = sum(w * poisson_binomial_pmf(q) for w, q in zip(weights, qs))
        low, high = _quantiles(pmf, level)
        if not rate.known:
            return Forecast(n, expected, low, high, nan, nan, nan)
        approvals = _approvals_pmf(pmf, rate)
        a_low, a_high = _quantiles(approvals, level)
        expected_approved = float(np.dot(np.arange(len(approvals)), approvals))
        return Forecast(n, expected, low, high, expected_approved, float(a_low), float(a_high))
    # Normal approximation: law of total variance over the calibration factors.
    means = np.array([q.sum() for q in qs])
    within = np.array([(q * (1 - q)).sum() for q in qs])
    variance = float(np.dot(weights, within) + np.dot(weights, (means - expected) ** 2))
    low, high = _normal_interval(expected, variance, level)
    if not rate.known:
        return Forecast(n, expected, int(low), int(high), nan, nan, nan)
    alpha, beta = rate.approved + 0.5, rate.applied - rate.approved + 0.5
    r_mean = alpha / (alpha + beta)
    r_var = alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
    # Given A and r, B is binomial: Var B = E[A] E[r(1 - r)] + Var(A r), A and r independent.
    second = variance + expected ** 2
    b_var = expected * (r_mean - (r_var + r_mean ** 2)) + second * (r_var + r_mean ** 2) \
        - (expected * r_mean) ** 2
    b_low, b_high = _normal_interval(expected * r_mean, b_var, level)
    return Forecast(n, expected, int(low), int(high), expected * r_mean, b_low, b_high)


def simulate(pools: pd.DataFrame, budget: int, split: str, *, control_share: float,
             rate: ApprovalRate, calibration: Calibration | None = None,
             configured: dict[str, int] | None = None, level: float = 0.95
             ) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Per state of ``pools`` (and a total row, ``state = 'ALL'``): the pieces allocated and
    spent, the pool, and the forecast; plus the people chosen per state."""
    allocated = allocate(budget, split, pools, configured)
    chosen, rows = {}, []
    for state in allocated:
        pool = pools[pools["state"] == state]
        people = choose(pool, allocated[state], control_share)
        chosen[state] = people
        result = forecast(people["score"].to_numpy(), rate, calibration, level)
        rows.append({"state": state, "split": split, "allocated": allocated[state],
                     "pool": len(pool), **result.as_dict()})
    everyone = (pd.concat(chosen.values()) if chosen
                else pd.DataFrame(columns=POOL_COLUMNS))
    total = forecast(everyone["score"].to_numpy(dtype=np.float64), rate, calibration, level)
    rows.append({"state": "ALL", "split": split, "allocated": int(budget),
                 "pool": int(len(pools)), **total.as_dict()})
    return pd.DataFrame(rows), chosen
