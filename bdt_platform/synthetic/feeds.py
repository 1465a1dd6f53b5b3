"""The four partner files of a state-month, as the partners would send them (feeds.md).

* ``eligibility`` (communitycare): one row per eligible person this month, with their PII - the
  only file that carries an SSN;
* ``mailreturns`` (mailvendor): one row per mail piece and what became of it;
* ``nudges`` (nudgevendor): campaign events keyed by the person token we gave the vendor;
* ``outcomes`` (statehhs): the state's decision on each application submitted this month.

Each renderer returns ``{column: [text, ...]}`` in contract column order, ready for
``writer.csv_bytes``.
"""

from __future__ import annotations

import numpy as np

from bdt_platform.synthetic.formats import dates, integers, money, timestamps
from bdt_platform.synthetic.funnel import MonthActivity
from bdt_platform.synthetic.people import PersonPool

Columns = dict[str, list[str]]

FEEDS = ("eligibility", "outcomes", "mailreturns", "nudges")


def eligibility(pool: PersonPool, month: MonthActivity) -> Columns:
    people = month.eligible
    n, tag = len(people), month.tag

    def col(values: np.ndarray) -> list[str]:
        return values[people].tolist()

    return {
        "record_id": [f"CC-{tag}-{i:06d}" for i in range(1, n + 1)],
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
