"""The one ``Definitions`` of bdt-platform: each domain's assets, jobs and sensors, merged.

``dagster dev`` from the repository root loads this module (workspace.yaml). The environment
(``BDT_ENV``) is read once, in ``core/settings.py``; ``core/resources.py`` builds the matching
resources. In the order data moves: the inbox sensor, the feeds and their ingest job, the dbt
models, the reports and their jobs, the outbox; the schedules and sensors that run them by
themselves (``ops/schedules.py``), the scorecard e-mail job; and the alert when a run fails.
"""

from __future__ import annotations

import dagster as dg

from bdt_platform.core.resources import build_resources
from bdt_platform.core.settings import Settings, load_settings
from bdt_platform.feeds.definitions import FEED_ASSETS, ingest_job
from bdt_platform.ops.alerts import ALERT_SENSORS
from bdt_platform.ops.schedules import build_automation, load_automation_config
from bdt_platform.ops.scorecard_mail import SCORECARD_JOBS
from bdt_platform.outbox.mail_list import OUTBOX_ASSETS
from bdt_platform.outreach.definitions import OUTREACH_ASSETS, outreach_resources
from bdt_platform.reports.jobs import build_jobs
from bdt_platform.reports.outcomes import REPORT_ASSETS
from bdt_platform.reports.outcomes_export import EXPORT_ASSETS
from bdt_platform.site.assets import build_usage_assets
from bdt_platform.warehouse.assets import build_dbt_assets


def build_definitions(settings: Settings) -> dg.Definitions:
    dbt_models = build_dbt_assets(settings.dbt_project_dir)
    jobs = [ingest_job, *build_jobs(dbt_models), *SCORECARD_JOBS]
    automation_config = load_automation_config(settings.schedules_path)
    automation = build_automation(jobs, automation_config)
    return dg.Definitions(
        assets=[*FEED_ASSETS, dbt_models, *REPORT_ASSETS, *EXPORT_ASSETS, *OUTBOX_ASSETS,
                *OUTREACH_ASSETS,
                *build_usage_assets(settings)],
        jobs=jobs,
        # The schedules, the inbox sensor at its configured interval, the late-file rebuild
        # and the monthly run's follow-ups (ops/schedules.py).
        schedules=automation.schedules,
        sensors=[*automation.sensors, *ALERT_SENSORS],
        resources={**build_resources(settings), **outreach_resources(settings)},
        # Every job's steps run in its run's own process, one after another. Dagster's default
        # (multiprocess) starts a Python process per step, which loads this code location again:
        # ~5 s per step on a 2-core machine, 30 s of a 56 s monthly run under the daemon, for
        # no parallelism (the steps that write the warehouse share the one-slot `warehouse`
        # pool, and dbt is one step). Retries and run monitoring work the same.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
