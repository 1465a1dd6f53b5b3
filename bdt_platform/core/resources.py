"""Turns :class:`~bdt_platform.core.settings.Settings` into resources, per environment.

Both environments return the same keys, so asset code never knows where it runs:
``inbox``, ``partners`` (the registry), ``alerts`` (the failure webhook), ``alert_mail`` and
``scorecard_mailer`` (the failure e-mail and the scheduled scorecard e-mail: SMTP and
addresses from the schedules file, password from settings),
``outbox``, ``lake``, ``warehouse``, ``casemgmt``, ``pii``, ``dbt``, and the IO manager
``lake_io_manager`` (Parquet in the lake). Prod: the lake in GCS (gcsfs), the warehouse in BigQuery,
dbt on its bigquery target; ``STORAGE_EMULATOR_HOST``/``BIGQUERY_EMULATOR_HOST`` point both at
emulators.
"""

from __future__ import annotations

import os

import dagster as dg

from bdt_platform.feeds.casemgmt import CaseManagementDatabase
from bdt_platform.inbox.folder import FolderInbox
from bdt_platform.inbox.partners import PartnerRegistryResource
from bdt_platform.ops.alerts import AlertWebhook, build_alert_mailer
from bdt_platform.ops.schedules import load_automation_config
from bdt_platform.ops.scorecard_mail import build_mailer
from bdt_platform.site.links import ReportSiteLinks
from bdt_platform.inbox.sftp import SftpInbox, parse_sftp_url, sibling_folder
from bdt_platform.outbox.base import FolderOutbox
from bdt_platform.outbox.sftp import SftpOutbox
from bdt_platform.core.pii_key import PiiKeyResource
from bdt_platform.core.settings import Settings, SettingsError
from bdt_platform.storage.lake import LakeResource
from bdt_platform.storage.lake_io import LakeIOManager
from bdt_platform.storage.warehouse import DuckDBWarehouse


def _sftp_credentials(settings: Settings) -> tuple[str, str]:
    """The key and known_hosts files an ``sftp://`` inbox needs (both required)."""
    if not settings.sftp_key:
        raise SettingsError("BDT_SFTP_KEY (the private key file) is required when BDT_INBOX is "
                            "sftp://...")
    if not settings.sftp_known_hosts:
        raise SettingsError("BDT_SFTP_KNOWN_HOSTS (a known_hosts file holding the server's host "
                            "key) is required when BDT_INBOX is sftp://...")
    return settings.sftp_key, settings.sftp_known_hosts


def _sftp_url(settings: Settings):
    try:
        return parse_sftp_url(settings.inbox)
    except ValueError as exc:
        raise SettingsError(f"BDT_INBOX: {exc}") from None


def build_inbox(settings: Settings):
    """A local folder, or the partner SFTP server for ``BDT_INBOX=sftp://user@host:port/path``."""
    if settings.inbox.startswith("sftp://"):
        key, known_hosts = _sftp_credentials(settings)
        url = _sftp_url(settings)
        return SftpInbox(host=url.host, port=url.port, username=url.username, root=url.path,
                         key_file=key, known_hosts_file=known_hosts)
    return FolderInbox(root=settings.inbox)


def build_outbox(settings: Settings):
    """``$BDT_HOME/outbox``, or with an SFTP inbox the ``outbox`` folder beside it on the same
    server (``sftp://u@h:p/inbox`` -> ``/outbox``)."""
    if settings.inbox.startswith("sftp://"):
        key, known_hosts = _sftp_credentials(settings)
        url = _sftp_url(settings)
        return SftpOutbox(host=url.host, port=url.port, username=url.username,
                          root=sibling_folder(url.path, "outbox"), key_file=key,
                          known_hosts_file=known_hosts)
    return FolderOutbox(root=str(settings.outbox))


def _pii(settings: Settings) -> PiiKeyResource:
    if settings.pii_key_file is not None:
        return PiiKeyResource(key_file=str(settings.pii_key_file))
    if settings.pii_key_in_process_env:
        return PiiKeyResource(key=dg.EnvVar("BDT_PII_KEY"))
    return PiiKeyResource(key=settings.pii_key)  # settings built from a mapping (tests)


def build_warehouse(settings: Settings):
    """The warehouse resource: DuckDB (publishing its read-only snapshot for the report site
    into ``$BDT_HOME/site``) or, in prod, BigQuery."""
    if settings.env == "prod":
        from bdt_platform.storage.bigquery import BigQueryWarehouse  # google-cloud: prod only

        return BigQueryWarehouse(project=settings.gcp_project, location=settings.bq_location,
                                 max_bytes_billed=settings.bq_max_bytes_billed,
                                 api_endpoint=settings.bigquery_emulator_host,
                                 retry_seconds=settings.bq_retry_seconds)
    from bdt_platform.metrics.snapshot import snapshot_path

    return DuckDBWarehouse(path=str(settings.warehouse_path),
                           snapshot_path=str(snapshot_path(settings.site_dir)))


def _lake_storage_options(settings: Settings) -> dict[str, str]:
    """gcsfs options: the storage emulator, anonymously; else Google's defaults (ADC)."""
    if settings.storage_emulator_host:
        return {"endpoint_url": settings.storage_emulator_host, "token": "anon"}
    return {}


def _platform_resources(settings: Settings) -> dict:
    """The same keys in both environments; only what backs them differs (lake folder or GCS
    bucket, DuckDB or BigQuery, ...)."""
    options = _lake_storage_options(settings) if settings.env == "prod" else {}
    automation = load_automation_config(settings.schedules_path)
    return {
        "inbox": build_inbox(settings),
        "partners": PartnerRegistryResource(path=str(settings.partners_path)),
        "alerts": AlertWebhook(url=settings.alert_webhook_url),
        "alert_mail": build_alert_mailer(settings, automation.mail, automation.alert_email_to),
        "scorecard_mailer": build_mailer(settings, automation.mail),
        "report_site": ReportSiteLinks(url=settings.site_url),
        "outbox": build_outbox(settings),
        "lake": LakeResource(root=settings.lake, storage_options=options),
        "lake_io_manager": LakeIOManager(root=settings.lake, storage_options=options),
        "warehouse": build_warehouse(settings),
        "casemgmt": CaseManagementDatabase(url=settings.casemgmt_url),
        "pii": _pii(settings),
    }


def _dbt(settings: Settings):
    """dagster-dbt's resource for the dbt project (imports dbt: only builds that run it ask)."""
    from bdt_platform.warehouse.project import dbt_resource

    watch = {}
    if settings.dbt_target == "bigquery":
        # dbt's BigQuery calls retry an unreachable service for up to 10 minutes each, past
        # the profile's deadline: the step stops dbt itself after bq_retry_seconds.
        watch = {"service_name": "BigQuery", "service_probe_url": bigquery_probe_url(settings),
                 "service_unreachable_seconds": settings.bq_retry_seconds}
    return dbt_resource(settings.dbt_target, settings.dbt_project_dir, settings.home / "dbt",
                        **watch)


def bigquery_probe_url(settings: Settings) -> str:
    """A cheap BigQuery REST URL whose answer (any, even 401 without credentials) shows the
    service can be reached: the project's datasets, one at most."""
    root = settings.bigquery_emulator_host or "https://bigquery.googleapis.com"
    return f"{root}/bigquery/v2/projects/{settings.gcp_project}/datasets?maxResults=1"


def _dbt_bigquery_env(settings: Settings) -> dict[str, str]:
    """What the profile's bigquery output reads (dbt_project/profiles.yml)."""
    emulator = settings.bigquery_emulator_host
    return {
        "BDT_GCP_PROJECT": settings.gcp_project or "",
        "BDT_BQ_LOCATION": settings.bq_location or "US",
        "BDT_BQ_MAX_BYTES_BILLED": str(settings.bq_max_bytes_billed),
        "BDT_BQ_RETRY_SECONDS": str(settings.bq_retry_seconds),
        "BDT_BQ_API_ENDPOINT": emulator or "",
        # An emulator takes any bearer token; Google gets application-default credentials.
        "BDT_BQ_AUTH_METHOD": "oauth-secrets" if emulator else "oauth",
        "BDT_BQ_TOKEN": "emulator" if emulator else "",
    }


PLANNED_EVENTS_SWITCH = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
#: Dagster's switch for storing the per-partition materializations of a range output in batches
#: (``instance_storage.PooledSqliteEventLogStorage.store_event_batch``: one transaction each).
EVENT_BATCH_SWITCH = "DAGSTER_EVENT_BATCH_SIZE"
LOCAL_EVENT_BATCH_SIZE = "100"


def build_resources(settings: Settings, *, dbt: bool = True) -> dict:
    """The resources for ``settings.env``; also exports what the dbt profile reads.
    ``dbt=False`` leaves out the dbt resource (and the import of dbt) for the feeds alone."""
    # dbt runs as a subprocess that inherits this environment; its profile reads these.
    os.environ["BDT_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    os.environ["BDT_DBT_TARGET"] = settings.dbt_target
    # The metric layer's cost of a mail piece (models/semantic/sem_outreach.sql reads it).
    os.environ["BDT_MAIL_PIECE_COST_USD"] = repr(settings.mail_piece_cost_usd)
    if settings.env == "prod":
        os.environ.update(_dbt_bigquery_env(settings))
    # A single-run backfill over 612 partitions records one "planned" event per asset instead
    # of one per partition (Dagster's own switch; each event costs ~5 ms on the local SQLite).
    # Trade-off named by Dagster: partitions of a failed run show as missing, not failed, in the UI.
    os.environ.setdefault(PLANNED_EVENTS_SWITCH, "true")
    if settings.env == "local":
        # ~5 ms -> ~3 ms per event on the local instance (3,060 such events in a 51x12 build).
        os.environ.setdefault(EVENT_BATCH_SWITCH, LOCAL_EVENT_BATCH_SIZE)
    resources = _platform_resources(settings)
    if dbt:
        resources["dbt"] = _dbt(settings)
    return resources
