"""Deterministic synthetic partner feeds and case-management data for demos, tests and benchmarks.

``generate(inbox, casemgmt_path, states=..., months=..., pii_key=...)`` writes, for each state x
month, the four partner drops (eligibility, outcomes, mailreturns, nudges) into ``inbox/<partner>/``
and the month's clients, calls and applications into a case-management SQLite database. The people
are shared across feeds and months, so the platform's joins and funnel reports have something real
to find. See ``funnel`` for the rates and ``people`` for who the people are.
"""

from bdt_platform.synthetic.generate import GenerationSummary, generate

__all__ = ["GenerationSummary", "generate"]
