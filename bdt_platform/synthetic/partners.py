"""Which partners the synthetic generator writes each feed as (the shipped registry lists them).

Per state: the state's benefits agency (``<state>agency``, e.g. ``paagency``) sends eligibility
and outcomes for its own state; the community partner ``communitycare`` sends eligibility for
every state; ``mailvendor`` sends mail returns and ``nudgevendor`` nudge events.
"""

from __future__ import annotations

COMMUNITY_PARTNER = "communitycare"
MAIL_VENDOR = "mailvendor"
NUDGE_VENDOR = "nudgevendor"


def state_agency(state: str) -> str:
    """The synthetic benefits agency of ``state``: ``PA`` -> ``paagency``."""
    return f"{state.lower()}agency"


def feed_partners(feed: str, state: str) -> tuple[str, ...]:
    """The partners whose files the generator writes for ``feed`` in ``state``; the first is the
    feed's main sender (the one a single-partner test drop uses)."""
    return {
        "eligibility": (state_agency(state), COMMUNITY_PARTNER),
        "outcomes": (state_agency(state),),
        "mailreturns": (MAIL_VENDOR,),
        "nudges": (NUDGE_VENDOR,),
    }[feed]
