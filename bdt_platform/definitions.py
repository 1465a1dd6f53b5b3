"""The one ``Definitions`` of bdt-platform: feeds -> warehouse (dbt) -> reports.

``dagster dev`` from the repository root loads this module (workspace.yaml). The environment
(``BDT_ENV``) is read once, in ``settings.py``; ``resources.py`` builds the matching resources.
"""

from __future__ import annotations

import dagster as dg

from bdt_platform import partitions as parts
from bdt_platform.feed_definitions import FEED_ASSETS, ingest_job
from bdt_platform.inbox.sensor import SENSORS
from bdt_platform.outbox.mail_list import OUTBOX_ASSETS
from bdt_platform.reports.outcomes import REPORT_ASSETS
from bdt_platform.reports.outcomes_export import EXPORT_ASSETS
from bdt_platform.resources import build_resources
from bdt_platform.settings import Settings, load_settings
from bdt_platform.warehouse.assets import build_dbt_assets


def build_jobs(dbt_models: dg.AssetsDefinition):
    # Building, step 1: every dbt model (one dbt command: views and dimensions whole, facts for
    # the run's rectangle of partitions) and the reports, in one run.
    build_job = dg.define_asset_job(
        "build_warehouse",
        selection=dg.AssetSelection.assets(dbt_models, *REPORT_ASSETS),
        partitions_def=parts.state_month_partitions,
        description="Build the dbt models (staging and intermediate views, dimensions, and the "
                    "facts for the run's state x month partitions) and the reports.",
    )
    # Building, step 2: the report as Parquet in the lake. A run of its own: the report logs
    # its materializations per partition (no output), so its dependants would be skipped in
    # the same run.
    export_job = dg.define_asset_job(
        "export_reports",
        selection=dg.AssetSelection.assets(*EXPORT_ASSETS),
        partitions_def=parts.state_month_partitions,
        description="Publish reports as Parquet files in the lake, for analysts' notebooks.",
    )
    return [ingest_job, build_job, export_job]


def build_definitions(settings: Settings) -> dg.Definitions:
    dbt_models = build_dbt_assets(settings.dbt_project_dir)
    assets = [*FEED_ASSETS, dbt_models, *REPORT_ASSETS, *OUTBOX_ASSETS,
              *EXPORT_ASSETS]
    return dg.Definitions(assets=assets, jobs=build_jobs(dbt_models),
                          sensors=SENSORS, resources=build_resources(settings))


defs = build_definitions(load_settings())
