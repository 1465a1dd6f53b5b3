"""The effects the generator plants, in one place, so tests can check that the platform finds them.

Who responds to a letter. A mailed person calls our call center (and ~70% of callers then apply)
with a probability that depends on what became of the letter (``CALL_P_BY_STATUS``) and on who
they are, on the log-odds scale (``CALL_LOG_ODDS``):

    logit p = logit(CALL_P_BY_STATUS[status]) + person_log_odds(person) - offset(status)

``person_log_odds`` is linear in what the partners' eligibility files say about the person
(household size, monthly income, preferred language, number of programs eligible for) plus a
hidden per-person ``responsiveness`` (normal, sd ``RESPONSIVENESS_SD``), which no file carries
but which shows through a person's earlier calls and applications: someone who applied before is
likelier to apply again. ``offset`` centres the effects over the state's pool, so each status
keeps its average call rate (``calibrated_call_p``). Every input of ``person_log_odds`` except
the responsiveness is a warehouse column, so a response model trained on the warehouse can
recover the signs and order of ``CALL_LOG_ODDS``.

The nudges on top (A/B): a mailed person in a text/call campaign's ``treatment`` arm calls with
probability ``+NUDGE_CALL_LIFT['treatment']`` (absolute), in ``control`` ``+NUDGE_CALL_LIFT
['control']``; texts are replied to at ``REPLY_P`` per arm (plus ``REPLY_P_BASE``). The readout's
``called`` lift of treatment over control is therefore about ``NUDGE_CALL_LIFT['treatment'] -
NUDGE_CALL_LIFT['control']`` among nudged people whose letter reached them in time.
"""

from __future__ import annotations

import numpy as np

#: Chance that a mailed person calls, by what happened to the letter (before the person's effects).
CALL_P_BY_STATUS = {"delivered": 0.11, "forwarded": 0.08, "returned": 0.02,
                    "undeliverable": 0.02}

#: Log-odds of calling per unit of each eligibility attribute (the planted response signal).
CALL_LOG_ODDS = {
    "household_size": 0.50,          # per household member above one
    "monthly_income_1000": -1.50,    # per $1,000 of monthly household income
    "programs_eligible": 0.70,       # per program eligible for beyond the first
}
#: Log-odds by preferred language (``en`` is the reference).
LANGUAGE_LOG_ODDS = {"en": 0.0, "es": 0.90, "zh": -1.00, "vi": -1.00}
#: Standard deviation of the hidden per-person responsiveness (log-odds).
RESPONSIVENESS_SD = 0.8

#: The nudge's lift on the call probability of a mailed person, per A/B arm (absolute).
NUDGE_CALL_LIFT = {"treatment": 0.07, "control": 0.02}
#: Chance of replying to a text, per arm, on top of ``REPLY_P_BASE``.
REPLY_P = {"treatment": 0.15, "control": 0.08}
REPLY_P_BASE = 0.03


def responsiveness(draw: np.random.Generator, n: int) -> np.ndarray:
    """The hidden responsiveness of ``n`` people (log-odds), from its own stream."""
    return draw.normal(0.0, RESPONSIVENESS_SD, size=n)


def person_log_odds(household_size: np.ndarray, income_cents: np.ndarray,
                    language: np.ndarray, programs_eligible: np.ndarray,
                    hidden: np.ndarray) -> np.ndarray:
    """Each person's log-odds of calling after a letter, before centring (see the module doc)."""
    household = np.asarray(household_size, dtype=np.float64)
    income = np.asarray(income_cents, dtype=np.float64) / 100_000.0
    programs = np.asarray(programs_eligible, dtype=np.float64)
    by_language = np.array([LANGUAGE_LOG_ODDS.get(str(code), 0.0) for code in language])
    return (CALL_LOG_ODDS["household_size"] * (household - 1)
            + CALL_LOG_ODDS["monthly_income_1000"] * income
            + CALL_LOG_ODDS["programs_eligible"] * (programs - 1)
            + by_language + np.asarray(hidden, dtype=np.float64))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def calibrated_call_p(log_odds: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Per letter status, the call probability of people with ``log_odds``, centred so that
    the ``reference`` population (the state's pool) calls at ``CALL_P_BY_STATUS`` on average.
    The offset is found by bisection: deterministic, to 1e-12."""
    reference = np.asarray(reference, dtype=np.float64)
    out = {}
    for status, base in CALL_P_BY_STATUS.items():
        low, high = -20.0, 20.0
        for _ in range(80):
            mid = (low + high) / 2
            if _sigmoid(_logit(base) + reference - mid).mean() > base:
                low = mid
            else:
                high = mid
        out[status] = _sigmoid(_logit(base) + np.asarray(log_odds, dtype=np.float64)
                               - (low + high) / 2)
    return out
