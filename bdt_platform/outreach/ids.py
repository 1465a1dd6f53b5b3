"""Stable identifiers: mail piece ids and A/B arms, pure functions of their inputs.

* ``mail_piece_id(state, month, token)``: ``MP-<STATE>-<YYYYMM>-<10 hex>``, a hash of the three,
  so rebuilding a partition issues the same ids (the vendor quotes them back in
  ``mailreturns``) and no two partitions share one.
* ``arm_for(token, campaign)``: a keyed hash (HMAC-SHA256 keyed by the campaign id) of the
  person token mapped to [0, 1) and compared with the cumulative arm weights, the scheme
  experimentation SDKs use. A person's arm depends on nothing but their token and the
  campaign's id and weights: it is the same on every rebuild, and adding people never moves
  anyone else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence

_SCALE = float(2**64)


def mail_piece_id(state: str, month: dt.date, person_token: str) -> str:
    """The id of the piece mailed to ``person_token`` for ``state`` x ``month``."""
    digest = hashlib.sha256(f"{state}|{month:%Y%m}|{person_token}".encode()).hexdigest()
    return f"MP-{state}-{month:%Y%m}-{digest[:10].upper()}"


def unit_hash(person_token: str, key: str) -> float:
    """HMAC-SHA256(key, token) as a number in [0, 1), uniform over tokens."""
    digest = hmac.new(key.encode(), person_token.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def unit_hashes(person_tokens: Sequence[str], key: str) -> list[float]:
    """``unit_hash`` of each token (one C call per token: ``hmac.digest``)."""
    secret = key.encode()
    return [int.from_bytes(hmac.digest(secret, token.encode(), "sha256")[:8], "big") / _SCALE
            for token in person_tokens]


def arm_for(person_token: str, campaign_id: str, arms: Sequence[tuple[str, float]]) -> str:
    """The arm of ``person_token`` in ``campaign_id``: the first arm whose cumulative weight
    exceeds the person's hash (weights in configured order, summing to 1)."""
    u = unit_hash(person_token, f"bdt-arm|{campaign_id}")
    cumulative = 0.0
    for arm, weight in arms:
        cumulative += weight
        if u < cumulative:
            return arm
    return arms[-1][0]  # u within rounding of 1


def control_draw(person_token: str, state: str, month: dt.date) -> float:
    """The person's place in the random-control lottery of a state x month mail list."""
    return unit_hash(person_token, f"bdt-mail-control|{state}|{month:%Y%m}")


def tie_break(person_token: str, state: str, month: dt.date) -> float:
    """A stable pseudo-random order among people the ranking cannot tell apart."""
    return unit_hash(person_token, f"bdt-mail-order|{state}|{month:%Y%m}")


def control_draws(person_tokens: Sequence[str], state: str, month: dt.date) -> list[float]:
    """``control_draw`` of each token."""
    return unit_hashes(person_tokens, f"bdt-mail-control|{state}|{month:%Y%m}")


def tie_breaks(person_tokens: Sequence[str], state: str, month: dt.date) -> list[float]:
    """``tie_break`` of each token."""
    return unit_hashes(person_tokens, f"bdt-mail-order|{state}|{month:%Y%m}")
