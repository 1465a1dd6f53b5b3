"""The feeds on their own: the raw assets, the job that lands them, and their resources.

``definitions.py`` builds the whole graph (feeds -> warehouse -> reports) from these plus dbt.
``bdt ingest`` runs only the ingest job, so it builds ``build_feed_definitions`` instead and never
imports dbt or dagster-dbt (about 3 s of a 2-core machine's start-up, paid by every ingest and,
in a backfill, once per ``bdt ingest``). The job, its assets and the resources they use are the
same objects in both, so a run is the same whichever built it.
"""

from __future__ import annotations

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.casemgmt import CASEMGMT_ASSETS
from bdt_platform.feeds.file_assets import FILE_FEED_ASSETS
from bdt_platform.core.resources import build_resources
from bdt_platform.core.runs import RUN_RETRY_TAGS
from bdt_platform.core.settings import Settings

FEED_ASSETS = [*FILE_FEED_ASSETS, *CASEMGMT_ASSETS]

# Landing: the partner files and the case-management extract, many partitions per run.
ingest_job = dg.define_asset_job(
    "ingest_feeds",
    selection=dg.AssetSelection.assets(*FEED_ASSETS),
    partitions_def=parts.state_month_partitions,
    description="Land partner files and case-management rows into raw.* tables.",
    tags=RUN_RETRY_TAGS,  # re-launched when its run dies (core/runs.py)
)


def build_feed_definitions(settings: Settings) -> dg.Definitions:
    """The feed assets and ``ingest_feeds`` with every resource but dbt."""
    return dg.Definitions(assets=FEED_ASSETS, jobs=[ingest_job],
                          resources=build_resources(settings, dbt=False))
