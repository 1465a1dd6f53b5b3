"""dbt models as assets: partitioned facts run for the run's partitions, the rest whole.

Models tagged ``partitioned`` (the ``fct_`` marts) are one ``@dbt_assets`` partitioned
``state x month`` with a single-run backfill policy: a run over many partitions is one dbt
invocation whose partition selection (``BDT_DBT_MIN_MONTH``/``MAX_MONTH``/``STATES``, read by
``macros/partitioning.sql``; dbt ``--vars`` of the same names take precedence) names the months
and states. Everything else (staging and
intermediate views, ``dim_person``) is a second, unpartitioned ``@dbt_assets``. dbt tests show
as asset checks on the models they test.
"""


import functools
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, dbt_assets

from bdt_platform import partitions as parts
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


@functools.cache
def build_dbt_assets(project_dir: Path = DBT_PROJECT_DIR) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """``(shared models, partitioned models)`` for the dbt project in ``project_dir``."""
    manifest = prepare_manifest(project_dir)

    @dbt_assets(
        manifest=manifest,
        select=f"tag:{PARTITIONED_TAG}",
        partitions_def=parts.state_month_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        dagster_dbt_translator=TRANSLATOR,
        name="dbt_partitioned_models",
    )
    def dbt_partitioned_models(context: dg.AssetExecutionContext, dbt: BundledDbtCliResource):
        """Fact tables rebuilt for the run's state x month partitions (delete + insert)."""
        variables = dbt_vars(context.partition_keys)
        context.log.info(f"dbt build for {len(context.partition_keys)} partition(s): {variables}")
        with dbt.partition_env(variables):
            invocation = dbt.cli(["build"], context=context)
        yield from invocation.stream()
        dbt.keep_parse_state(invocation)

    @dbt_assets(
        manifest=manifest,
        exclude=f"tag:{PARTITIONED_TAG}",
        dagster_dbt_translator=TRANSLATOR,
        name="dbt_models",
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: BundledDbtCliResource):
        """Staging and intermediate views and whole-table marts such as the person dimension."""
        invocation = dbt.cli(["build"], context=context)
        yield from invocation.stream()
        dbt.keep_parse_state(invocation)

    return dbt_models, dbt_partitioned_models
