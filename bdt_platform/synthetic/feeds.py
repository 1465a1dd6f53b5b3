"""The partner files of a state-month, as the partners would send them (feeds.md).

Who sends what is ``partners.feed_partners``; the shipped partner registry lists the same:

* ``eligibility`` - from two partners, the state agency (``<state>agency``, e.g. ``paagency``)
  and the community partner ``communitycare``: one row per eligible person the partner knows,
  with their PII (the only files that carry an SSN). ``split`` says who knows whom: ~45% of the
  month's eligible people are only in the agency's file, ~35% only in communitycare's, ~20% in
  both, with identical identifying fields (so one person token). Each partner numbers its own
  rows (``AG-<STATE>-<YYYYMM>-NNNNNN`` for the agency, ``CC-...`` for communitycare);
* ``outcomes`` (the state agency): the state's decision on each application submitted this month;
* ``mailreturns`` (``mailvendor``): one row per mail piece and what became of it;
* ``nudges`` (``nudgevendor``): campaign events keyed by the person token we gave the vendor.

Each renderer returns ``{column: [text, ...]}`` in contract column order, ready for
``writer.csv_bytes``; ``partner_files`` gives a feed's files as ``(partner, columns)`` pairs.
"""

from __future__ import annotations

import numpy as np

from bdt_platform.synthetic.formats import dates, integers, money, timestamps
from bdt_platform.synthetic.funnel import MonthActivity
from bdt_platform.synthetic.partners import COMMUNITY_PARTNER, feed_partners, state_agency
from bdt_platform.synthetic.people import PersonPool
from bdt_platform.synthetic.split import split_eligible

Columns = dict[str, list[str]]

FEEDS = ("eligibility", "outcomes", "mailreturns", "nudges")


def record_prefix(partner: str, state: str) -> str:
    """The prefix of ``partner``'s eligibility ``record_id`` values: ``AG`` for the state
    agency, ``CC`` for communitycare."""
    return {state_agency(state): "AG", COMMUNITY_PARTNER: "CC"}[partner]


def eligibility(pool: PersonPool, month: MonthActivity, people: np.ndarray | None = None,
                prefix: str = "CC") -> Columns:
    """One eligibility file: a row per person in ``people`` (pool indexes, default every
    eligible person of the month), ``record_id`` ``<prefix>-<STATE>-<YYYYMM>-NNNNNN``."""
    people = month.eligible if people is None else np.asarray(people, dtype=np.int64)
    n, tag = len(people), month.tag

    def col(values: np.ndarray) -> list[str]:
        return values[people].tolist()

    return {
        "record_id": [f"{prefix}-{tag}-{i:06d}" for i in range(1, n + 1)],
        "first_name": col(pool.first_name),
        "last_name": col(pool.last_name),
        "ssn": col(pool.ssn),
        "date_of_birth": col(pool.date_of_birth),
        "address_line1": col(pool.address_line1),
        "address_line2": col(pool.address_line2),
        "city": col(pool.city),
        "state": [month.state] * n,
        "zip": col(pool.zip),
        "phone": col(pool.phone),
        "email": col(pool.email),
        "language": col(pool.language),
        "household_size": integers(pool.household_size[people]),
        "monthly_income": money(pool.income_cents[people]),
        "programs_enrolled": col(pool.programs_enrolled),
        "programs_eligible": col(pool.programs_eligible),
    }


def mailreturns(pool: PersonPool, month: MonthActivity) -> Columns:
    mail = month.mail
    return {
        "mail_piece_id": mail["mail_piece_id"].tolist(),
        "mailed_date": dates(mail["mailed_day"]),
        "status": mail["status"].tolist(),
        "status_date": dates(mail["status_day"]),
    }


def nudges(pool: PersonPool, month: MonthActivity) -> Columns:
    events = month.nudges
    return {
        "event_id": events["event_id"].tolist(),
        "campaign_id": events["campaign_id"].tolist(),
        "arm": events["arm"].tolist(),
        "channel": events["channel"].tolist(),
        "recipient_key": pool.token[events["person"]].tolist(),
        "event_type": events["event_type"].tolist(),
        "event_ts": timestamps(events["event_ts"]),
    }


def outcomes(pool: PersonPool, month: MonthActivity) -> Columns:
    decided = month.outcomes
    return {
        "application_id": decided["application_id"].tolist(),
        "program": decided["program"].tolist(),
        "decision": decided["decision"].tolist(),
        "decision_date": dates(decided["decision_day"]),
        "monthly_benefit_usd": money(decided["benefit_cents"]),
    }


RENDERERS = {"eligibility": eligibility, "outcomes": outcomes, "mailreturns": mailreturns,
             "nudges": nudges}


def partner_files(feed: str, pool: PersonPool, month: MonthActivity, *, seed: int
                  ) -> list[tuple[str, Columns]]:
    """``feed``'s files for the state-month, one ``(partner, columns)`` per partner of
    ``feed_partners(feed, state)``, in that order. Eligibility is split between its partners
    (``split.split_eligible``); the other feeds have one partner and one file."""
    if feed == "eligibility":
        shares = split_eligible(pool, month.eligible, seed=seed)
        return [(partner, eligibility(pool, month, people, record_prefix(partner, month.state)))
                for partner, people in shares.items()]
    (partner,) = feed_partners(feed, month.state)
    return [(partner, RENDERERS[feed](pool, month))]
