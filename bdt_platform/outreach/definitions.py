"""The outreach assets and the resource they read their configuration from, for
``bdt_platform/definitions.py`` and ``reports/jobs.py``."""

from __future__ import annotations

from bdt_platform.outbox.mail_list import mail_list as mail_list_file
from bdt_platform.outreach.config import OutreachConfigResource
from bdt_platform.outreach.mail_list import mail_list_table
from bdt_platform.outreach.nudges import nudge_assignments, nudge_list
from bdt_platform.outreach.readout_asset import ab_readout

#: Built with the warehouse (``build_warehouse``): the tables of each partition.
OUTREACH_BUILD_ASSETS = [mail_list_table, nudge_assignments]
#: Built after every partition (``build_readouts``): across months and states.
OUTREACH_READOUT_ASSETS = [ab_readout]
#: Sent after the build (``export_reports``): the vendor files, once each.
OUTREACH_PUSH_ASSETS = [mail_list_file, nudge_list]
#: Merged into the definitions (``outbox/mail_list`` is already in ``OUTBOX_ASSETS``).
OUTREACH_ASSETS = [mail_list_table, nudge_assignments, ab_readout, nudge_list]


def outreach_resources(settings) -> dict:
    """``outreach``: the configuration file settings name (``BDT_OUTREACH_CONFIG``; the
    shipped ``outreach.yaml`` by default)."""
    return {"outreach": OutreachConfigResource(path=str(settings.outreach_config))}
