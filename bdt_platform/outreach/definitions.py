"""The outreach assets and the resource they read their configuration from, for
``bdt_platform/definitions.py`` and ``reports/jobs.py``."""

from __future__ import annotations

from bdt_platform.ml.assets import ML_ASSETS
from bdt_platform.outbox.mail_list import mail_list as mail_list_file
from bdt_platform.outreach.config import OutreachConfigResource
from bdt_platform.outreach.forecast_asset import outreach_forecast
from bdt_platform.outreach.lift_readout import mail_list_readout
from bdt_platform.outreach.mail_list import mail_list_table
from bdt_platform.outreach.nudges import nudge_assignments, nudge_list
from bdt_platform.outreach.readout_asset import ab_readout

#: Built with the warehouse (``build_warehouse``): the response model and its scores
#: (``bdt_platform/ml``), then the tables of each partition that rank by them.
OUTREACH_BUILD_ASSETS = [*ML_ASSETS, mail_list_table, nudge_assignments]
#: Built after every partition (``build_readouts``), across months and states: the nudge
#: campaigns' A/B readout, the model's lift over random targeting and the lists' forecast
#: against their actuals (all read the lists, which log their partitions without an output, so
#: they cannot run in the build's own run).
OUTREACH_READOUT_ASSETS = [ab_readout, mail_list_readout, outreach_forecast]
#: Sent after the build (``export_reports``): the vendor files, once each.
OUTREACH_PUSH_ASSETS = [mail_list_file, nudge_list]
#: Merged into the definitions (``outbox/mail_list`` is already in ``OUTBOX_ASSETS``).
OUTREACH_ASSETS = [*ML_ASSETS, mail_list_table, nudge_assignments, *OUTREACH_READOUT_ASSETS,
                   nudge_list]


def outreach_resources(settings) -> dict:
    """``outreach``: the configuration file settings name (``BDT_OUTREACH_CONFIG``; the
    shipped ``outreach.yaml`` by default)."""
    return {"outreach": OutreachConfigResource(path=str(settings.outreach_config))}
