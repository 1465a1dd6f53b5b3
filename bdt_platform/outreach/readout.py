"""The A/B readout's statistics, as pure functions (no warehouse, no Dagster).

* ``compare``: the absolute lift of an arm's conversion rate over control's, its
  ``1 - alpha`` confidence interval (Newcombe's hybrid score interval for a difference of two
  independent proportions, ``statsmodels.stats.proportion.confint_proportions_2indep``) and the
  two-sided p-value of "no difference" (``test_proportions_2indep``, its default Agresti-Caffo
  Wald test). Fixed-horizon intervals: read them once, at the end of the campaign's window;
  the readout uses neither CUPED nor sequential (always-valid) intervals.
* ``srm_p_value``: the sample-ratio-mismatch test, ``scipy.stats.chisquare`` of the people per
  arm against the configured weights. Below ``srm_alpha`` (0.001) the split is broken
  (assignment or delivery lost people unevenly) and no lift of that campaign is trustworthy.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

#: The person-level outcomes, each a 0/1 per person in the campaign.
METRICS = {
    "called": "called our call center within the attribution window after first contact",
    "applied": "submitted an application within the window",
    "approved": "had an application submitted within the window approved",
    "replied": "replied to the campaign's text within the window",
    "opted_out": "opted out of the campaign within the window (a guardrail: lower is better)",
}
READOUT_COLUMNS = ["campaign_id", "arm", "metric", "is_primary", "n", "conversions", "rate",
                   "control_rate", "lift_vs_control", "ci_low", "ci_high", "p_value",
                   "srm_p_value", "srm_flag", "trustworthy", "attribution_days"]
#: The column types of ``reports.ab_readout`` (the same on every backend, empty or not).
READOUT_SCHEMA = pa.schema(
    [("campaign_id", pa.string()), ("arm", pa.string()), ("metric", pa.string()),
     ("is_primary", pa.bool_()), ("n", pa.int64()), ("conversions", pa.int64())]
    + [(name, pa.float64()) for name in ("rate", "control_rate", "lift_vs_control", "ci_low",
                                         "ci_high", "p_value", "srm_p_value")]
    + [("srm_flag", pa.bool_()), ("trustworthy", pa.bool_()), ("attribution_days", pa.int64())])


@dataclass(frozen=True)
class Comparison:
    lift: float
    ci_low: float
    ci_high: float
    p_value: float


def compare(conversions: int, n: int, control_conversions: int, control_n: int,
            alpha: float = 0.05) -> Comparison:
    """Lift of ``conversions / n`` over ``control_conversions / control_n``."""
    if n == 0 or control_n == 0:
        nan = float("nan")
        return Comparison(nan, nan, nan, nan)
    # statsmodels and scipy load here, not with the definitions (~1 s of every process start)
    from statsmodels.stats.proportion import confint_proportions_2indep, test_proportions_2indep

    low, high = confint_proportions_2indep(conversions, n, control_conversions, control_n,
                                           method="newcomb", compare="diff", alpha=alpha)
    with warnings.catch_warnings():  # ratio diagnostics divide by a zero rate; unused here
        warnings.simplefilter("ignore", RuntimeWarning)
        test = test_proportions_2indep(conversions, n, control_conversions, control_n,
                                       compare="diff", return_results=True)
    p_value = float(test.pvalue)
    if math.isnan(p_value) and conversions * control_n == control_conversions * n:
        p_value = 1.0  # no conversions at all in either arm (or all): no difference
    return Comparison(conversions / n - control_conversions / control_n, float(low),
                      float(high), p_value)


def srm_p_value(counts: dict[str, int], weights: dict[str, float]) -> float:
    """Chi-square p-value of the observed people per arm against the expected split."""
    arms = list(weights)
    observed = np.array([counts.get(arm, 0) for arm in arms], dtype=float)
    total = observed.sum()
    if total == 0:
        return float("nan")
    expected = np.array([weights[arm] for arm in arms], dtype=float)
    expected = expected / expected.sum() * total
    from scipy.stats import chisquare

    return float(chisquare(observed, expected).pvalue)


def readout(people: pd.DataFrame, *, campaign_id: str, weights: dict[str, float],
            control_arm: str, metrics: list[str], alpha: float = 0.05,
            srm_alpha: float = 0.001, attribution_days: int = 30) -> pd.DataFrame:
    """The readout rows of one campaign from ``people`` (one row per person: ``arm`` and a
    0/1 column per metric): per arm x metric n, conversions, rate and, for every arm but
    control, the lift with its interval and p-value; the campaign's SRM p-value on each row."""
    counts = people["arm"].value_counts().to_dict()
    srm = srm_p_value(counts, weights)
    flagged = bool(not math.isnan(srm) and srm < srm_alpha)
    control = people[people["arm"] == control_arm]
    rows = []
    for metric in metrics:
        c_n, c_x = len(control), int(control[metric].sum()) if len(control) else 0
        for arm in weights:
            group = people[people["arm"] == arm]
            n, x = len(group), int(group[metric].sum()) if len(group) else 0
            row = {"campaign_id": campaign_id, "arm": arm, "metric": metric,
                   "is_primary": metric == metrics[0], "n": n, "conversions": x,
                   "rate": x / n if n else float("nan"),
                   "control_rate": c_x / c_n if c_n else float("nan"),
                   "lift_vs_control": float("nan"), "ci_low": float("nan"),
                   "ci_high": float("nan"), "p_value": float("nan"), "srm_p_value": srm,
                   "srm_flag": flagged, "trustworthy": False,
                   "attribution_days": attribution_days}
            if arm != control_arm:
                result = compare(x, n, c_x, c_n, alpha)
                row.update(lift_vs_control=result.lift, ci_low=result.ci_low,
                           ci_high=result.ci_high, p_value=result.p_value,
                           trustworthy=not flagged and not math.isnan(result.lift))
            rows.append(row)
    return pd.DataFrame(rows, columns=READOUT_COLUMNS)
