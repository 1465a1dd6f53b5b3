"""Outreach: the monthly mail list, nudge campaign assignments and their A/B readout.

One small module per job: ``config`` (the validated configuration), ``ids`` (piece ids and
deterministic arms), ``rules`` (who may be mailed, as a pure function), ``mail_list`` and
``nudges`` (the warehouse tables, as Dagster assets), ``readout`` (the statistics) and
``readout_asset`` (``reports.ab_readout``). See docs/outreach.md.
"""
