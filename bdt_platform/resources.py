"""Turns :class:`~bdt_platform.settings.Settings` into resources, per environment.

Both environments return the same keys, so asset code never knows where it runs:
``inbox``, ``lake``, ``warehouse``, ``casemgmt``, ``pii``, ``dbt``.
"""

from __future__ import annotations

import os

import dagster as dg

from bdt_platform.feeds.casemgmt import CaseManagementDatabase
from bdt_platform.inbox.folder import FolderInbox
from bdt_platform.pii_resource import PiiKeyResource
from bdt_platform.settings import Settings, SettingsError
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.warehouse import DuckDBWarehouse
from bdt_platform.warehouse.project import dbt_resource


def build_inbox(settings: Settings):
    if settings.inbox.startswith("sftp://"):
        raise SettingsError("BDT_INBOX=sftp://... is not supported yet; use a folder path")
    return FolderInbox(root=settings.inbox)


def _pii(settings: Settings) -> PiiKeyResource:
    if settings.pii_key_file is not None:
        return PiiKeyResource(key_file=str(settings.pii_key_file))
    if settings.pii_key_in_process_env:
        return PiiKeyResource(key=dg.EnvVar("BDT_PII_KEY"))
    return PiiKeyResource(key=settings.pii_key)  # settings built from a mapping (tests)


def _local(settings: Settings) -> dict:
    return {
        "inbox": build_inbox(settings),
        "lake": LakeResource(root=settings.lake),
        "warehouse": DuckDBWarehouse(path=str(settings.warehouse_path)),
        "casemgmt": CaseManagementDatabase(url=settings.casemgmt_url),
        "pii": _pii(settings),
        "dbt": dbt_resource(settings.dbt_target, settings.dbt_project_dir),
    }


def _prod(settings: Settings) -> dict:
    raise SettingsError(
        "BDT_ENV=prod (GCS lake, BigQuery warehouse) is not configured yet; use BDT_ENV=local"
    )


def build_resources(settings: Settings) -> dict:
    """The resources for ``settings.env``; also exports what the dbt profile reads."""
    # dbt runs as a subprocess that inherits this environment; its profile reads these two.
    os.environ["BDT_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    os.environ["BDT_DBT_TARGET"] = settings.dbt_target
    return {"local": _local, "prod": _prod}[settings.env](settings)
