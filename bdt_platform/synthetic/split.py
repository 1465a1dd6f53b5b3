"""Which eligibility partners know which eligible people: the state agency, communitycare, or both.

A state-month's eligible people (``MonthActivity.eligible``, the population the funnel draws
from) are shared between the state's two eligibility partners (``partners.feed_partners``): the
state agency (``<state>agency``) and the community partner ``communitycare``. Each person falls
into one of three groups, by a stable hash of their person id (``PersonPool.client_id``) and the
seed - SHA-256 of ``"<seed>|<client_id>|eligibility"``, its first 8 bytes read as a fraction in
[0, 1), never Python's salted ``hash()``:

* below ``AGENCY_ONLY``  (~45%): only in the agency's file;
* below ``AGENCY_ONLY + COMMUNITY_ONLY`` (next ~35%): only in communitycare's file;
* otherwise (~20%): in both files, with identical identifying fields, so one person token.

So the union of the two files' people is exactly the month's eligible population, and a person's
group is the same every month they are eligible (a partner that knows someone keeps knowing
them). The group depends on nothing but the seed and the person, so a state's files do not
depend on which other states or months are generated.

The contract accepts a header-only file (``file_not_empty``: "at least a header row"), but a
partner that sends an empty eligibility list is not what the generator means to show: when a
month has at least two eligible people and the hash leaves one partner with nobody, the first
person in file (pool) order of the other partner's people is placed in both files. (Only a month
with a single eligible person, at a tiny ``scale``, writes a header-only eligibility file for the
partner the hash did not pick.)
"""

from __future__ import annotations

import hashlib

import numpy as np

from bdt_platform.synthetic.partners import feed_partners
from bdt_platform.synthetic.people import PersonPool

AGENCY_ONLY = 0.45
COMMUNITY_ONLY = 0.35
BOTH = 0.20  # the rest: 1 - AGENCY_ONLY - COMMUNITY_ONLY


def share_fraction(seed: int, client_id: str) -> float:
    """The person's stable position in [0, 1) that picks their group (see the module doc)."""
    digest = hashlib.sha256(f"{seed}|{client_id}|eligibility".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_eligible(pool: PersonPool, eligible: np.ndarray, *, seed: int
                   ) -> dict[str, np.ndarray]:
    """``{partner: pool indexes}`` for the eligibility partners of ``pool.state``, in
    ``feed_partners`` order (agency first); each keeps ``eligible``'s (file) order, and their
    union is ``eligible``."""
    agency, community = feed_partners("eligibility", pool.state)
    eligible = np.asarray(eligible, dtype=np.int64)
    u = np.array([share_fraction(seed, pool.client_id[p]) for p in eligible.tolist()],
                 dtype=np.float64)
    in_agency = (u < AGENCY_ONLY) | (u >= AGENCY_ONLY + COMMUNITY_ONLY)
    in_community = u >= AGENCY_ONLY
    if len(eligible) >= 2:
        for mine, theirs in ((in_agency, in_community), (in_community, in_agency)):
            if not mine.any():
                mine[np.flatnonzero(theirs)[0]] = True
    return {agency: eligible[in_agency], community: eligible[in_community]}
