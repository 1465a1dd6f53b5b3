"""Deterministic synthetic partner feeds and case-management data for demos, tests and benchmarks.

``generate(inbox, casemgmt_path, states=..., months=..., pii_key=...)`` writes, for each state x
month, the partner drops of the four feeds (eligibility, outcomes, mailreturns, nudges) into
``inbox/<partner>/`` - one file per partner that sends the feed (``partners.feed_partners``), so
eligibility comes twice, from the state agency and from communitycare, with some people in both -
and the month's clients, calls and applications into a case-management SQLite database. The people
are shared across feeds and months, so the platform's joins and funnel reports have something real
to find. See ``funnel`` for the rates and ``people`` for who the people are.
"""

from bdt_platform.synthetic.generate import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
