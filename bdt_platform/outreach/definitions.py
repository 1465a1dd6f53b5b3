"""The outreach assets and the resource they read their configuration from, for
``bdt_platform/definitions.py`` and ``reports/jobs.py``."""

from __future__ import annotations

from bdt_platform.ml.assets import ML_ASSETS
from bdt_platform.outreach.lift_readout import mail_list_readout
from bdt_platform.outbox.mail_list import mail_list as mail_list_file
from bdt_platform.outreach.config import DEFAULT_PATH, OutreachConfigResource
from bdt_platform.outreach.mail_list import mail_list_table
from bdt_platform.outreach.nudges import nudge_assignments, nudge_list
from bdt_platform.outreach.readout_asset import ab_readout

#: Built with the warehouse (``build_warehouse``): the tables, the response model and its
#: scores (``bdt_platform/ml``) before the mail list that ranks by them.
OUTREACH_BUILD_ASSETS = [*ML_ASSETS, mail_list_table, nudge_assignments, ab_readout]
#: Sent after the build (``export_reports``): the vendor files, once each; and the model's
#: lift over random targeting, which reads the lists (``outreach/mail_list`` logs its
#: partitions without an output, so its dependants cannot run in the build's own run).
OUTREACH_PUSH_ASSETS = [mail_list_file, nudge_list, mail_list_readout]
#: Merged into the definitions (``outbox/mail_list`` is already in ``OUTBOX_ASSETS``).
OUTREACH_ASSETS = [*ML_ASSETS, mail_list_table, nudge_assignments, ab_readout,
                   mail_list_readout, nudge_list]


def outreach_resources(settings) -> dict:
    """``outreach``: the configuration file; the shipped default until settings name one
    (``settings.outreach_config``, ``BDT_OUTREACH_CONFIG``)."""
    path = getattr(settings, "outreach_config", None) or DEFAULT_PATH
    return {"outreach": OutreachConfigResource(path=str(path))}
