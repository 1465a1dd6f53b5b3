"""The one place that reads the environment.

Every other module receives a :class:`Settings` (or resources built from it by
``resources.py``); nothing else calls ``os.environ``. ``BDT_ENV=local`` (the default) needs no
account or server: a local inbox folder, a local lake folder, a DuckDB warehouse and a SQLite
case-management database, all under ``$BDT_HOME``.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENVIRONMENTS = ("local", "prod")
# BigQuery's per-query cap when BDT_BQ_MAX_BYTES_BILLED is unset: 100 GiB (the dbt profile's too).
DEFAULT_BQ_MAX_BYTES_BILLED = 100 * 1024**3
# How long BigQuery calls (bdt's and dbt's) keep retrying while BigQuery cannot be reached, when
# BDT_BQ_RETRY_SECONDS is unset; then the step fails and its retry policy takes over.
DEFAULT_BQ_RETRY_SECONDS = 300
#: What BDT_DAGSTER_PG_URL may start with, and the scheme the instance is given
#: (``Settings.dagster_pg_driver_url``).
PG_URL_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg2://")
PG_DRIVER_SCHEME = "postgresql+psycopg2"


#: The partner registry shipped with the project (``inbox/partners.py`` reads it).
DEFAULT_PARTNERS = Path(__file__).resolve().parents[1] / "inbox" / "partners.yaml"


class SettingsError(ValueError):
    """A missing or invalid setting; the message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    env: str
    home: Path
    inbox: str
    lake: str
    warehouse_path: Path
    casemgmt_url: str = field(repr=False)  # may hold a password: never in a repr
    dagster_home: Path
    pii_key: str = field(repr=False)
    pii_key_file: Path | None = None  # local only: where a generated key lives
    # True when the key is the process's BDT_PII_KEY, so resources can reference it by name
    # (dg.EnvVar) and the Dagster UI never shows the value.
    pii_key_in_process_env: bool = False
    sftp_key: str | None = None
    sftp_known_hosts: str | None = None
    gcp_project: str | None = None
    gcs_bucket: str | None = None
    bq_location: str | None = None
    bq_max_bytes_billed: int = DEFAULT_BQ_MAX_BYTES_BILLED
    bq_retry_seconds: int = DEFAULT_BQ_RETRY_SECONDS
    # Google's standard emulator variables (STORAGE_EMULATOR_HOST, BIGQUERY_EMULATOR_HOST), as
    # URLs: when set, prod talks to these endpoints with anonymous credentials.
    storage_emulator_host: str | None = None
    bigquery_emulator_host: str | None = None
    dbt_project_dir: Path = Path(__file__).resolve().parents[2] / "dbt_project"
    # The partner registry in force (BDT_PARTNERS): who may send which feed for which states.
    partners_path: Path = DEFAULT_PARTNERS
    # Where run-failure alerts are posted (BDT_ALERT_WEBHOOK_URL); may carry a token: not shown.
    alert_webhook_url: str | None = field(default=None, repr=False)
    # BDT_DAGSTER_PG_URL: the Dagster instance (runs, event log, schedules) in PostgreSQL. A
    # secret (it holds the password): never in a repr, a file or a log; the dagster.yaml bdt
    # writes names the variable instead (runs.instance_for).
    dagster_pg_url: str | None = field(default=None, repr=False)
    # The metric layer: what one mail piece costs (BDT_MAIL_PIECE_COST_USD; the metric
    # cost_per_enrollment), passed to dbt, applied by the next build.
    mail_piece_cost_usd: float = 0.65
    # The report site (bdt serve). BDT_SITE_SECRET signs session cookies and embed links (local:
    # generated once into $BDT_HOME/site/secret.key; prod: required). Never shown.
    site_secret: str = field(default="", repr=False)
    # BDT_SITE_IDENTITY_HEADER: when set (e.g. X-Forwarded-User), the site trusts that header,
    # set by the proxy in front of it, as the signed-in user instead of its own sign-in. Off
    # by default.
    site_identity_header: str | None = None
    # BDT_SITE_TARGETS: the KPI targets the scorecard marks states against (YAML); the
    # shipped default when unset.
    site_targets_path: Path = Path(__file__).resolve().parents[1] / "site" / "targets.yaml"
    # BDT_SITE_URL: where users open the report site; the Dagster UI links report partitions
    # to their pages there.
    site_url: str = "http://127.0.0.1:8080"
    # BDT_SCHEDULES: the schedules, sensor intervals and scheduled-reporting mail settings
    # (docs/operations.md, "Schedules"); the shipped default when unset.
    schedules_path: Path = Path(__file__).resolve().parents[1] / "ops" / "schedules.yaml"
    # BDT_SMTP_PASSWORD: the SMTP password for the scorecard e-mail, a secret (never shown).
    smtp_password: str | None = field(default=None, repr=False)
    # True when the password is the process's BDT_SMTP_PASSWORD (resources name it, dg.EnvVar).
    smtp_password_in_process_env: bool = False
    # BDT_OUTREACH_CONFIG: the outreach rules, budgets and nudge campaigns (YAML); the shipped
    # default (bdt_platform/outreach/outreach.yaml) when unset.
    outreach_config: Path = Path(__file__).resolve().parents[1] / "outreach" / "outreach.yaml"

    def result_shaping(self) -> dict[str, str]:
        """The settings that change what a build computes from the same inputs and code (part of
        the code fingerprint that lets ``bdt build`` skip what is up to date)."""
        return {"mail_piece_cost_usd": repr(self.mail_piece_cost_usd),
                "dbt_target": self.dbt_target}

    @property
    def site_dir(self) -> Path:
        """The report site's own state: users and usage (``site.sqlite``) and the read-only
        warehouse snapshot the site queries, so it never holds the warehouse's lock."""
        return self.home / "site"

    @property
    def dagster_pg_driver_url(self) -> str | None:
        """``dagster_pg_url`` naming the psycopg2 driver, the one dagster-postgres works with
        (SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, and no longer knows
        ``postgres://``)."""
        if self.dagster_pg_url is None:
            return None
        return f"{PG_DRIVER_SCHEME}://{self.dagster_pg_url.split('://', 1)[1]}"

    @property
    def dbt_target(self) -> str:
        return "bigquery" if self.env == "prod" else "duckdb"

    @property
    def casemgmt_sqlite_path(self) -> Path | None:
        """The SQLite file behind ``casemgmt_url``, or None for another database."""
        prefix = "sqlite:///"
        return Path(self.casemgmt_url[len(prefix):]) if self.casemgmt_url.startswith(prefix) else None

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def quarantine(self) -> str:
        return self.lake.rstrip("/") + "/quarantine"


def _local_pii_key(home: Path) -> str:
    """Local only: a random key generated once into $BDT_HOME, with a warning."""
    key_file = home / "pii.key"
    if key_file.exists():
        return key_file.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    print(
        f"bdt: warning: BDT_PII_KEY is not set; generated a local key in {key_file}. "
        "Set BDT_PII_KEY to share person tokens across machines.",
        file=sys.stderr,
    )
    return key


def _local_site_secret(home: Path) -> str:
    """Local only: a random secret for the report site's cookies, generated once."""
    key_file = home / "site" / "secret.key"
    if key_file.exists():
        return key_file.read_text().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    key_file.write_text(secret + "\n")
    key_file.chmod(0o600)
    return secret


def _mail_piece_cost(value: str | None) -> float:
    if value is None or not value.strip():
        return 0.65
    try:
        cost = float(value)
        if cost < 0 or cost != cost:
            raise ValueError
    except ValueError:
        raise SettingsError(f"BDT_MAIL_PIECE_COST_USD must be a non-negative number of dollars "
                            f"such as 0.65, got {value!r}") from None
    return cost


def _bq_retry_seconds(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_BQ_RETRY_SECONDS
    try:
        seconds = int(value)
        if not 1 <= seconds <= 86400:
            raise ValueError
    except ValueError:
        raise SettingsError(f"BDT_BQ_RETRY_SECONDS must be a whole number of seconds from 1 to 86400 "
                            f"such as 300, got {value!r}") from None
    return seconds


def _site_url(value: str | None) -> str:
    value = (value or "").strip().rstrip("/")
    if not value:
        return "http://127.0.0.1:8080"
    if not value.startswith(("http://", "https://")):
        raise SettingsError("BDT_SITE_URL must be an http:// or https:// URL such as "
                            "https://reports.example.org")
    return value


def _endpoint(value: str | None) -> str | None:
    """``host:port`` or a URL -> ``http(s)://host:port`` (no trailing slash); None when unset."""
    value = (value or "").strip().rstrip("/")
    if not value:
        return None
    return value if value.startswith(("http://", "https://")) else f"http://{value}"


def _dagster_pg_url(value: str | None) -> str | None:
    """BDT_DAGSTER_PG_URL, checked; the error never shows the value (it holds a password)."""
    value = (value or "").strip()
    if not value:
        return None
    if not value.startswith(PG_URL_SCHEMES) or not value.split("://", 1)[1]:
        scheme = value.split("://", 1)[0] + "://" if "://" in value else "no scheme"
        raise SettingsError(f"BDT_DAGSTER_PG_URL must be a PostgreSQL URL starting with "
                            f"{' or '.join(PG_URL_SCHEMES)}, got {scheme} (value not shown: it "
                            "may hold a password)")
    return value


def _webhook(value: str | None) -> str | None:
    """``BDT_ALERT_WEBHOOK_URL``: an http(s) URL, or unset."""
    value = (value or "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise SettingsError("BDT_ALERT_WEBHOOK_URL must be an http:// or https:// URL")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    from_process = environ is None
    environ = os.environ if environ is None else environ
    env = environ.get("BDT_ENV", "local").strip().lower() or "local"
    if env not in ENVIRONMENTS:
        raise SettingsError(f"BDT_ENV must be one of {', '.join(ENVIRONMENTS)}, got {env!r}")
    home = Path(environ.get("BDT_HOME") or ".bdt").expanduser().absolute()
    inbox = environ.get("BDT_INBOX") or str(home / "inbox")
    dagster_home = Path(environ.get("DAGSTER_HOME") or home / "dagster").absolute()
    casemgmt_url = environ.get("BDT_CASEMGMT_URL") or f"sqlite:///{home / 'casemgmt.sqlite'}"

    pii_key = environ.get("BDT_PII_KEY")
    pii_key_file = None
    gcp_project = environ.get("BDT_GCP_PROJECT")
    gcs_bucket = environ.get("BDT_GCS_BUCKET")
    max_bytes = environ.get("BDT_BQ_MAX_BYTES_BILLED")
    if env == "prod":
        for name, value in (("BDT_PII_KEY", pii_key), ("BDT_GCP_PROJECT", gcp_project),
                            ("BDT_GCS_BUCKET", gcs_bucket)):
            if not value:
                raise SettingsError(f"{name} is required when BDT_ENV=prod")
        if "/" in gcs_bucket or ":" in gcs_bucket:
            raise SettingsError(f"BDT_GCS_BUCKET must be a bucket name such as my-bucket, got "
                                f"{gcs_bucket!r}")
        lake = f"gs://{gcs_bucket}/lake"
        site_secret = environ.get("BDT_SITE_SECRET") or ""
    else:
        lake = str(home / "lake")
        if not pii_key:
            pii_key = _local_pii_key(home)
            pii_key_file = home / "pii.key"
        site_secret = environ.get("BDT_SITE_SECRET") or ""
    try:
        bq_max = int(max_bytes) if max_bytes else DEFAULT_BQ_MAX_BYTES_BILLED
        if bq_max <= 0:
            raise ValueError
    except ValueError:
        raise SettingsError(f"BDT_BQ_MAX_BYTES_BILLED must be a positive integer (bytes), got "
                            f"{max_bytes!r}") from None
    bq_retry = _bq_retry_seconds(environ.get("BDT_BQ_RETRY_SECONDS"))

    return Settings(
        env=env,
        home=home,
        inbox=inbox,
        lake=lake,
        warehouse_path=home / "warehouse.duckdb",
        casemgmt_url=casemgmt_url,
        dagster_home=dagster_home,
        pii_key=pii_key,
        pii_key_file=pii_key_file,
        pii_key_in_process_env=from_process and pii_key_file is None,
        sftp_key=environ.get("BDT_SFTP_KEY"),
        sftp_known_hosts=environ.get("BDT_SFTP_KNOWN_HOSTS"),
        gcp_project=gcp_project,
        gcs_bucket=gcs_bucket,
        bq_location=environ.get("BDT_BQ_LOCATION"),
        bq_max_bytes_billed=bq_max,
        bq_retry_seconds=bq_retry,
        storage_emulator_host=_endpoint(environ.get("STORAGE_EMULATOR_HOST")),
        bigquery_emulator_host=_endpoint(environ.get("BIGQUERY_EMULATOR_HOST")),
        dagster_pg_url=_dagster_pg_url(environ.get("BDT_DAGSTER_PG_URL")),
        **({"dbt_project_dir": Path(environ["BDT_DBT_PROJECT_DIR"]).absolute()}
           if environ.get("BDT_DBT_PROJECT_DIR") else {}),
        **({"partners_path": Path(environ["BDT_PARTNERS"]).expanduser().absolute()}
           if environ.get("BDT_PARTNERS") else {}),
        alert_webhook_url=_webhook(environ.get("BDT_ALERT_WEBHOOK_URL")),
        mail_piece_cost_usd=_mail_piece_cost(environ.get("BDT_MAIL_PIECE_COST_USD")),
        site_secret=site_secret,
        site_identity_header=(environ.get("BDT_SITE_IDENTITY_HEADER") or "").strip() or None,
        site_url=_site_url(environ.get("BDT_SITE_URL")),
        smtp_password=environ.get("BDT_SMTP_PASSWORD") or None,
        smtp_password_in_process_env=from_process and bool(environ.get("BDT_SMTP_PASSWORD")),
        **({"schedules_path": Path(environ["BDT_SCHEDULES"]).expanduser().absolute()}
           if environ.get("BDT_SCHEDULES") else {}),
        **({"outreach_config": Path(environ["BDT_OUTREACH_CONFIG"]).expanduser().absolute()}
           if environ.get("BDT_OUTREACH_CONFIG") else {}),
        **({"site_targets_path": Path(environ["BDT_SITE_TARGETS"]).expanduser().absolute()}
           if environ.get("BDT_SITE_TARGETS") else {}),
    )


def site_secret(settings: Settings) -> str:
    """The secret that signs the report site's cookies and embed links: BDT_SITE_SECRET, or
    (local only) one generated once into ``$BDT_HOME/site/secret.key``. Prod requires the
    variable, checked when the site starts (other commands never need it)."""
    if settings.site_secret:
        return settings.site_secret
    if settings.env == "prod":
        raise SettingsError("BDT_SITE_SECRET is required for the report site when BDT_ENV=prod")
    return _local_site_secret(settings.home)
