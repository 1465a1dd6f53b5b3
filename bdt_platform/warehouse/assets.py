"""dbt models as assets: one multi-asset, partitioned facts built for the run's partitions.

Every model is an asset of one ``@dbt_assets``, so a run that builds the warehouse is one dbt
command, and dbt runs the whole graph at once (a fact starts as soon as its staging views exist,
while tests of other models run beside it). Models tagged ``partitioned`` (the ``fct_`` marts)
are partitioned ``state x month`` (``BdtDbtTranslator.get_partitions_def``); everything else
(staging and intermediate views, ``dim_person``) is unpartitioned, materialized once per run.
The single-run backfill policy makes a run over many partitions one dbt command whose partition
selection (``BDT_DBT_MIN_MONTH``/``MAX_MONTH``/``STATES``, read by ``macros/partitioning.sql``;
dbt ``--vars`` of the same names take precedence) names the months and states. dbt tests show
as asset checks on the models they test.
"""


import functools
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from bdt_platform.core import partitions as parts
from bdt_platform.core.retries import TRANSIENT_RETRY_POLICY, transient_retries
from bdt_platform.storage.warehouse import WAREHOUSE_POOL
from bdt_platform.warehouse.staleness import RECOMPUTE_TAG
from bdt_platform.warehouse.project import (DBT_PROJECT_DIR, BundledDbtCliResource,
                                            prepare_manifest)

PARTITIONED_TAG = "partitioned"


class BdtDbtTranslator(DagsterDbtTranslator):
    """Keys are ``[schema, model]`` (``marts/fct_outreach``), groups follow the model folder;
    sources carry ``meta.dagster.asset_key`` so they join the feed assets."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return super().get_asset_key(dbt_resource_props)
        schema = dbt_resource_props["config"].get("schema") or dbt_resource_props["schema"]
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_partitions_def(self, dbt_resource_props: Mapping[str, Any],
                           ) -> dg.PartitionsDefinition | None:
        """``state x month`` for models tagged ``partitioned``; none for the rest."""
        if PARTITIONED_TAG in (dbt_resource_props.get("tags") or []):
            return parts.state_month_partitions
        return None

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "warehouse"


TRANSLATOR = BdtDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=False))


def dbt_vars(partition_keys: Sequence[str]) -> dict[str, Any]:
    """The dbt ``--vars`` for a set of ``month|state`` keys: month bounds and the states."""
    pairs = [parts.split_key(key) for key in partition_keys]
    months = sorted({month for _, month in pairs})
    states = sorted({state for state, _ in pairs}, key=parts.STATES.index)
    return {"min_month": months[0].isoformat(), "max_month": months[-1].isoformat(),
            "states": states}


#: dbt's unit tests (``models/*/_*__unit_tests.yml``) check the models' SQL on fixed inputs, so
#: they prove nothing new on each build's data: dbt's advice is to run them in development and CI,
#: not in production builds. They cost ~0.5-1 s of every build; the test suite runs them
#: (``dbt test --select test_type:unit``, test_end_to_end.py).
BUILD_EXCLUDES = ("--exclude-resource-type", "unit_test")


@functools.cache
def build_dbt_assets(project_dir: Path = DBT_PROJECT_DIR) -> dg.AssetsDefinition:
    """Every model of the dbt project in ``project_dir`` as one multi-asset."""
    manifest = prepare_manifest(project_dir)

    @dbt_assets(
        manifest=manifest,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=TRANSLATOR,
        name="dbt_models",
        # dbt writes the warehouse: one step at a time (DuckDB's one writer); a model that
        # failed on a lock or a Google 5xx is retried, the whole dbt command again.
        retry_policy=TRANSIENT_RETRY_POLICY,
        pool=WAREHOUSE_POOL,
    )
    @transient_retries
    def dbt_models(context: dg.AssetExecutionContext, dbt: BundledDbtCliResource):
        """The run's selected models in one dbt command: staging and intermediate views, the
        person dimension (the people whose rows changed since its last build), and the fact
        tables for the run's state x month partitions (delete + insert)."""
        variables = {}
        if context.has_partition_key or context.has_partition_key_range:
            variables = dbt_vars(context.partition_keys)
            context.log.info(f"dbt build for {len(context.partition_keys)} partition(s): "
                             f"{variables}")
        if context.run.tags.get(RECOMPUTE_TAG) == "true":
            # bdt build --force: dim_person computes everyone, not only the changed people.
            variables["recompute_people"] = "true"
        with dbt.partition_env(variables):
            invocation = dbt.cli(["build", *BUILD_EXCLUDES], context=context)
        yield from dbt.stream_watched(invocation)
        dbt.keep_parse_state(invocation)

    return dbt_models
