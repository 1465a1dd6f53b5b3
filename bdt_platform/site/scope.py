"""Query values from the URL, checked, and a user's states enforced before any query runs.

Everything a request names (metrics, dimensions, states, months) is parsed here into values and
checked; a bad one is a :class:`BadRequest` (400) or :class:`NotFound` (404) with the reason,
and a state outside the user's own a :class:`~bdt_platform.site.auth.Forbidden` (403). Values
are only ever values: ``states=PA' OR 1=1`` is an unknown state, never SQL.
"""

from __future__ import annotations

import datetime as dt

from bdt_platform.core import partitions as parts
from bdt_platform.site.auth import Forbidden
from bdt_platform.site.users import User

DIMENSIONS = ("state", "month", "program")


class BadRequest(ValueError):
    """A bad query value: 400 with the reason."""

    status = 400


class NotFound(ValueError):
    """An unknown metric or page: 404 with the reason."""

    status = 404


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def parse_states(text: str | None) -> list[str] | None:
    """``PA,NJ`` -> ``["PA", "NJ"]`` (canonical order); empty or missing -> None (all)."""
    if text is None or not text.strip():
        return None
    states = [s.strip().upper() for s in text.split(",") if s.strip()]
    unknown = [s for s in states if s not in parts.STATES]
    if unknown:
        raise BadRequest(f"unknown state {_short(unknown[0])!r}: use two-letter codes such as "
                         "PA,NJ")
    return sorted(set(states), key=parts.STATES.index)


def parse_month(text: str | None, what: str = "month") -> dt.date:
    if not text or not text.strip():
        raise BadRequest(f"{what} is required (YYYY-MM)")
    value = text.strip()
    if not (len(value) in (7, 10) and value[:4].isdigit() and value[4] == "-"):
        raise BadRequest(f"not a month: {_short(value)!r} (expected YYYY-MM)")
    try:
        return parts.parse_month(value)
    except ValueError:
        raise BadRequest(f"not a month: {_short(value)!r} (expected YYYY-MM)") from None


def parse_months(text: str | None) -> tuple[dt.date, dt.date] | None:
    """``2024-01..2024-06`` (inclusive) or ``2024-03`` -> (first, last); empty -> None."""
    if text is None or not text.strip():
        return None
    first, sep, last = text.strip().partition("..")
    start = parse_month(first)
    end = parse_month(last) if sep else start
    if end < start:
        raise BadRequest(f"month range {_short(text)!r} ends before it starts")
    return start, end


def parse_by(text: str | None, default: tuple[str, ...] = ("state", "month")) -> tuple[str, ...]:
    if text is None or not text.strip():
        return default
    by = [d.strip().lower() for d in text.split(",") if d.strip()]
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise BadRequest(f"unknown dimension {_short(unknown[0])!r}; one of "
                         f"{', '.join(DIMENSIONS)}")
    if len(set(by)) != len(by):
        raise BadRequest("a dimension is named twice in by")
    return tuple(by)


def parse_names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if not names:
        raise BadRequest("name at least one metric (metrics=a,b)")
    return list(dict.fromkeys(names))


def allowed_states(user: User, requested: list[str] | None) -> list[str] | None:
    """The states to query for ``user``: ``requested`` when all are theirs (403 otherwise);
    with nothing requested, the user's own states (None: every state)."""
    if user.states is None:
        return requested
    if requested is None:
        return list(user.states)
    outside = [s for s in requested if s not in user.states]
    if outside:
        raise Forbidden(f"you may not see {', '.join(outside)}: your states are "
                        f"{', '.join(user.states)}")
    return requested


def check_state(user: User, state: str | None) -> str:
    """One state (required), known and within the user's scope."""
    if not state or not state.strip():
        raise BadRequest("state is required (e.g. state=PA)")
    [checked] = parse_states(state) or [None]
    if checked is None or "," in state:
        raise BadRequest("give exactly one state")
    allowed_states(user, [checked])
    return checked
