"""The jobs that build the warehouse and publish the reports (the ingest job is the feeds' own,
``feeds.definitions``)."""

from __future__ import annotations

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import RUN_RETRY_TAGS
from bdt_platform.reports.outcomes import REPORT_ASSETS
from bdt_platform.reports.outcomes_export import EXPORT_ASSETS
from bdt_platform.outreach.definitions import (OUTREACH_BUILD_ASSETS, OUTREACH_PUSH_ASSETS,
                                               OUTREACH_READOUT_ASSETS)
from bdt_platform.warehouse.build import BUILD_JOB, EXPORT_JOB, READOUT_JOB, USAGE_JOB


def build_jobs(dbt_models: dg.AssetsDefinition) -> list[dg.UnresolvedAssetJobDefinition]:
    """``build_warehouse`` (the dbt models and the reports), ``build_readouts``,
    ``export_reports`` and ``publish_usage``."""
    # Building, step 1: every dbt model (one dbt command: views and dimensions whole, facts for
    # the run's rectangle of partitions) and the reports, in one run.
    build_job = dg.define_asset_job(
        BUILD_JOB,
        selection=dg.AssetSelection.assets(dbt_models, *REPORT_ASSETS, *OUTREACH_BUILD_ASSETS),
        partitions_def=parts.state_month_partitions,
        description="Build the dbt models (staging and intermediate views, dimensions, and the "
                    "facts for the run's state x month partitions) and the reports.",
        tags=RUN_RETRY_TAGS,  # re-launched when its run dies (core/runs.py)
    )
    # Building, step 2: the readouts over every partition (unpartitioned), once the builds of
    # all the partitions asked are done.
    readout_job = dg.define_asset_job(
        READOUT_JOB, selection=dg.AssetSelection.assets(*OUTREACH_READOUT_ASSETS),
        description="The A/B readouts of the nudge campaigns, over every month built.")
    # Building, step 3: the report as Parquet in the lake. A run of its own: the report logs
    # its materializations per partition (no output), so its dependants would be skipped in
    # the same run.
    export_job = dg.define_asset_job(
        EXPORT_JOB,
        selection=dg.AssetSelection.assets(*EXPORT_ASSETS, *OUTREACH_PUSH_ASSETS),
        partitions_def=parts.state_month_partitions,
        description="Publish reports as Parquet files in the lake, for analysts' notebooks, "
                    "and send the month's mail and nudge lists to the vendors (once).",
    )
    # The report site's usage rows into the warehouse (usage.page_views): unpartitioned, so a
    # job of its own; `bdt build` runs it last.
    usage_job = dg.define_asset_job(
        USAGE_JOB, selection=dg.AssetSelection.keys(dg.AssetKey(["usage", "page_views"])),
        description="Copy the report site's usage records into usage.page_views.")
    return [build_job, readout_job, export_job, usage_job]
