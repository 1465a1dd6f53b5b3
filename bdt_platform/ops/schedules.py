"""When the platform runs by itself: the schedules and the sensors that follow them.

Every cron string, the time zone and the sensors' intervals come from configuration
(:func:`load_automation_config`: ``ops/schedules.yaml`` shipped here). None of them ticks until
a Dagster daemon runs (``dagster-daemon run``; ``bdt ui`` / ``dagster dev`` start one) and it is
turned on (the UI: Automation -> the schedule or sensor -> Start, or ``dagster schedule start
monthly_reporting -m bdt_platform.definitions``); the run-status sensor that chains the monthly
run's follow-ups is on by default.

- ``monthly_reporting`` (schedule, default 06:00 on the 3rd, America/New_York): one
  ``build_warehouse`` run for the month just closed, all 51 states, as a single-run backfill
  (the ``dagster/asset_partition_range_start/end`` tags ``bdt build`` uses): every dbt model and
  the report. Run key ``monthly_reporting:YYYY-MM`` (Dagster keys a
  schedule's run keys per tick: a second tick builds the month again, the same rows).
- ``reporting_followups`` (run-status sensor, running by default): when a monthly (or
  late-file) build succeeds, requests ``export_reports`` for the same partitions; after a
  monthly build also ``scorecard_mail`` for its month (``ops/scorecard_mail.py``).
- ``nightly_casemgmt`` (schedule, default 01:30 nightly): one ``ingest_feeds`` run of the
  case-management assets (raw/clients, raw/applications, raw/calls) for exactly the partitions
  whose rows changed since the last extract, as ``bdt ingest`` does (the database compared with
  the warehouse at the tick). Skipped, with the reason, when nothing changed or the warehouse is
  busy (the next night catches up: the comparison is not a time window).
- ``inbox_sensor``: the inbox sensor (``inbox/sensor.py``) at the configured interval.
- ``late_file_rebuild`` (sensor, default every 120 s): a raw feed partition materialized after
  its report partition (a late or re-sent partner file, a changed case-management partition
  for a month already reported) gets a ``build_warehouse`` run for exactly those partitions,
  tagged ``bdt/trigger=late_file`` and ``bdt/late_files`` (the files), which ``bdt explain``'s
  run id leads to; ``reporting_followups`` then exports them. Partitions never reported yet are
  left to the monthly run.
"""


import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from bdt_platform.core import partitions as parts
from bdt_platform.feeds.casemgmt import EVENT_TIME, CaseManagementDatabase
from bdt_platform.feeds.specs import ALL_SPECS
from bdt_platform.inbox import sensor as inbox
from bdt_platform.inbox.ingest import INGEST_JOB, changed_casemgmt_partitions
from bdt_platform.storage.warehouse import Warehouse, WarehouseBusy
from bdt_platform.warehouse.build import BUILD_JOB, EXPORT_JOB, READOUT_JOB

DEFAULT_CONFIG = Path(__file__).with_name("schedules.yaml")

MONTHLY_SCHEDULE = "monthly_reporting"
CASEMGMT_SCHEDULE = "nightly_casemgmt"
LATE_FILE_SENSOR = "late_file_rebuild"
FOLLOWUPS_SENSOR = "reporting_followups"
SCORECARD_JOB = "scorecard_mail"

#: Why a run was started by the platform itself: ``monthly_reporting``, ``late_file``, ...
TRIGGER_TAG = "bdt/trigger"
#: The month a monthly run reports (``YYYY-MM``).
MONTH_TAG = "bdt/month"
#: The files (or case-management tables) whose late arrival a rebuild is for.
LATE_FILES_TAG = "bdt/late_files"
#: The run a follow-up run follows.
AFTER_RUN_TAG = "bdt/after_run"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"

RAW_KEYS = [dg.AssetKey(["raw", name]) for name in ALL_SPECS]
REPORT_KEY = dg.AssetKey(["reports", "outcomes"])
CASEMGMT_KEYS = [dg.AssetKey(["raw", table]) for table in EVENT_TIME]
#: Raw materializations read per asset and tick; the rest waits for the next tick.
MAX_EVENTS_PER_TICK = 5000


class AutomationConfigError(ValueError):
    """The schedules file is invalid: the message names the file, the key and the problem."""


@dataclass(frozen=True)
class MailConfig:
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    starttls: bool = False
    smtp_user: str | None = None
    sender: str = "bdt-platform@localhost"
    recipients: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class AutomationConfig:
    time_zone: str = "America/New_York"
    monthly_cron: str = "0 6 3 * *"
    casemgmt_cron: str = "30 1 * * *"
    inbox_interval_seconds: int = inbox.INTERVAL_SECONDS
    late_file_interval_seconds: int = 120
    mail: MailConfig = field(default_factory=MailConfig)
    #: Who gets the failure alert by e-mail (through ``mail``'s SMTP server); empty: nobody.
    alert_email_to: tuple[str, ...] = ()


def load_automation_config(path: Path = DEFAULT_CONFIG) -> AutomationConfig:
    """Read and check the schedules file (``ops/schedules.yaml`` by default)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise AutomationConfigError(f"schedules file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise AutomationConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AutomationConfigError(f"{path}: expected a mapping")

    def section(name: str) -> dict:
        value = data.get(name) or {}
        if not isinstance(value, dict):
            raise AutomationConfigError(f"{path}: {name} must be a mapping")
        return value

    def cron(name: str, default: str) -> str:
        text = str(section(name).get("cron", default)).strip()
        if len(text.split()) != 5:
            raise AutomationConfigError(f"{path}: {name}.cron must have 5 fields "
                                        f"(minute hour day month weekday), got {text!r}")
        from dagster._utils.schedules import is_valid_cron_string

        if not is_valid_cron_string(text):
            raise AutomationConfigError(f"{path}: {name}.cron is not a valid cron string: "
                                        f"{text!r}")
        return text

    def seconds(name: str, default: int) -> int:
        value = section(name).get("interval_seconds", default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AutomationConfigError(f"{path}: {name}.interval_seconds must be a positive "
                                        f"whole number, got {value!r}")
        return value

    zone = str(data.get("time_zone", AutomationConfig.time_zone))
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise AutomationConfigError(f"{path}: time_zone {zone!r} is not an IANA time zone "
                                    "(e.g. America/New_York, UTC)") from None
    return AutomationConfig(
        time_zone=zone,
        monthly_cron=cron("monthly_reporting", AutomationConfig.monthly_cron),
        casemgmt_cron=cron("nightly_casemgmt", AutomationConfig.casemgmt_cron),
        inbox_interval_seconds=seconds("inbox_sensor", inbox.INTERVAL_SECONDS),
        late_file_interval_seconds=seconds("late_file_rebuild", 120),
        mail=_mail_config(path, section("scorecard_mail")),
        alert_email_to=_addresses(path, "failure_alerts.email_to",
                                  section("failure_alerts").get("email_to")),
    )


def _addresses(path: Path, where: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(a, str) and "@" in a for a in value):
        raise AutomationConfigError(f"{path}: {where} must be a list of e-mail addresses")
    return tuple(value)


def _mail_config(path: Path, data: dict) -> MailConfig:
    known = {"smtp_host", "smtp_port", "starttls", "smtp_user", "sender", "recipients"}
    extra = sorted(set(data) - known)
    if extra:
        raise AutomationConfigError(f"{path}: scorecard_mail: unknown key(s) {', '.join(extra)}"
                                    " (the SMTP password is a setting, BDT_SMTP_PASSWORD)")
    port = data.get("smtp_port", 25)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise AutomationConfigError(f"{path}: scorecard_mail.smtp_port must be a port number")
    recipients: dict[str, tuple[str, ...]] = {}
    raw = data.get("recipients") or {}
    if not isinstance(raw, dict):
        raise AutomationConfigError(f"{path}: scorecard_mail.recipients must map state codes "
                                    "to lists of addresses")
    for state, addresses in raw.items():
        code = str(state).upper()
        if code not in parts.STATES:
            raise AutomationConfigError(f"{path}: scorecard_mail.recipients: unknown state "
                                        f"{state!r}")
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list) or not all(
                isinstance(a, str) and "@" in a for a in addresses):
            raise AutomationConfigError(f"{path}: scorecard_mail.recipients.{code} must be a "
                                        "list of e-mail addresses")
        recipients[code] = tuple(addresses)
    return MailConfig(smtp_host=str(data.get("smtp_host", "127.0.0.1")), smtp_port=port,
                      starttls=bool(data.get("starttls", False)),
                      smtp_user=data.get("smtp_user") or None,
                      sender=str(data.get("sender", MailConfig.sender)), recipients=recipients)


# -- the monthly reporting run -------------------------------------------------------------------

def month_just_closed(when: dt.datetime | dt.date) -> dt.date:
    """The month before the one ``when`` falls in (its local date)."""
    day = when.date() if isinstance(when, dt.datetime) else when
    return parts.add_months(parts.month_start(day), -1)


def monthly_run_request(month: dt.date) -> dg.RunRequest:
    """One ``build_warehouse`` run over every state for ``month`` (a single-run backfill)."""
    tags = {**parts.range_tags(list(parts.STATES), [month]), TRIGGER_TAG: MONTHLY_SCHEDULE,
            MONTH_TAG: f"{month:%Y-%m}"}
    return dg.RunRequest(run_key=f"{MONTHLY_SCHEDULE}:{month:%Y-%m}", tags=tags)


def _monthly_schedule(config: AutomationConfig) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=MONTHLY_SCHEDULE, cron_schedule=config.monthly_cron, job_name=BUILD_JOB,
        execution_timezone=config.time_zone, default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"The monthly reporting run ({config.monthly_cron}, {config.time_zone}): one "
            "build_warehouse run for the month just closed, all states (every dbt model and the "
            "report); when it succeeds, reporting_followups exports the report and e-mails each "
            "state's scorecard."))
    def monthly_reporting(context: dg.ScheduleEvaluationContext):
        month = month_just_closed(context.scheduled_execution_time)
        if month < parts.month_start(parts.FIRST_MONTH):
            return dg.SkipReason(f"{month:%Y-%m} is before the first partition month")
        return monthly_run_request(month)

    return monthly_reporting


# -- the nightly case-management extract ---------------------------------------------------------

def casemgmt_run_request(changed: Iterable[tuple[str, dt.date]], day: dt.date) -> dg.RunRequest:
    """One ``ingest_feeds`` run of the case-management assets for exactly ``changed``: the
    bounding rectangle's tags, the partitions themselves in the config (``ExtractConfig.only``),
    as ``bdt ingest`` runs it."""
    changed = sorted(set(changed), key=lambda p: (p[1], parts.STATES.index(p[0])))
    [(states, months)] = parts.bounding_rectangle(changed)
    only = sorted(parts.partition_key(s, m) for s, m in changed)
    config = {"ops": {f"raw__{table}": {"config": {"only": only}} for table in EVENT_TIME}}
    digest = hashlib.sha256(",".join(only).encode()).hexdigest()[:12]
    return dg.RunRequest(run_key=f"{CASEMGMT_SCHEDULE}:{day.isoformat()}:{digest}",
                         asset_selection=CASEMGMT_KEYS, run_config=config,
                         tags={**parts.range_tags(states, months),
                               TRIGGER_TAG: CASEMGMT_SCHEDULE})


def _casemgmt_schedule(config: AutomationConfig) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=CASEMGMT_SCHEDULE, cron_schedule=config.casemgmt_cron, job_name=INGEST_JOB,
        execution_timezone=config.time_zone, default_status=dg.DefaultScheduleStatus.STOPPED,
        description=(
            f"The nightly case-management extract ({config.casemgmt_cron}, {config.time_zone}): "
            "one ingest_feeds run of raw/clients, raw/applications and raw/calls for exactly "
            "the partitions whose rows changed since the last extract (as bdt ingest does); "
            "skipped with the reason when none changed or the warehouse is busy."))
    def nightly_casemgmt(context: dg.ScheduleEvaluationContext,
                         casemgmt: CaseManagementDatabase, warehouse: Warehouse):
        try:
            changed = changed_casemgmt_partitions(casemgmt, warehouse)
        except WarehouseBusy as exc:
            return dg.SkipReason(f"{exc}; the next tick extracts what changed")
        if not changed:
            return dg.SkipReason(f"no changes in {casemgmt.describe()}")
        return casemgmt_run_request(changed, context.scheduled_execution_time.date())

    return nightly_casemgmt


# -- the inbox sensor at the configured interval -------------------------------------------------

def _inbox_sensor(config: AutomationConfig) -> dg.SensorDefinition:
    base = inbox.inbox_sensor
    return dg.sensor(name=base.name, job_name=base.job_name,
                     minimum_interval_seconds=config.inbox_interval_seconds,
                     default_status=base.default_status,
                     description=base.description)(base._raw_fn)  # noqa: SLF001


# -- late files: rebuild exactly what they changed -----------------------------------------------

@dataclass
class LateDecision:
    """What one tick of ``late_file_rebuild`` found: partition -> the files that made it stale."""

    stale: dict[str, list[str]] = field(default_factory=dict)
    cursor: int = 0

    def run_requests(self) -> list[dg.RunRequest]:
        pairs = [parts.split_key(key) for key in self.stale]
        requests = []
        for states, months in parts.rectangles(pairs):
            keys = sorted(parts.partition_key(s, m) for s in states for m in months)
            files = sorted({f for key in keys for f in self.stale[key]})
            digest = hashlib.sha256(",".join(keys).encode()).hexdigest()[:12]
            requests.append(dg.RunRequest(
                run_key=f"{LATE_FILE_SENSOR}:{self.cursor}:{digest}",
                tags={**parts.range_tags(states, months), TRIGGER_TAG: "late_file",
                      LATE_FILES_TAG: ", ".join(files)[:1000]}))
        return requests


def find_late_partitions(instance: dg.DagsterInstance, after: int,
                         limit: int = MAX_EVENTS_PER_TICK) -> LateDecision:
    """Raw materializations recorded after storage id ``after`` whose partition's report was
    materialized before them: the partitions to rebuild, each with its files."""
    decision = LateDecision(cursor=after)
    newest: dict[str, tuple[int, str]] = {}
    for key in RAW_KEYS:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=limit,
            ascending=True).records
        for record in records:
            decision.cursor = max(decision.cursor, record.storage_id)
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            source = materialization.metadata.get("source_file")
            name = str(source.value) if source is not None else f"raw/{key.path[-1]}"
            partition = materialization.partition
            decision.stale.setdefault(partition, [])
            if name not in decision.stale[partition]:
                decision.stale[partition].append(name)
            newest[partition] = max(newest.get(partition, (0, "")), (record.storage_id, name))
    if not newest:
        return decision
    reported = instance.event_log_storage.get_latest_storage_id_by_partition(
        REPORT_KEY, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(newest))
    # Stale: reported before the raw data changed. Never reported: the monthly run's to build.
    decision.stale = {key: files for key, files in decision.stale.items()
                      if key in reported and reported[key] < newest[key][0]}
    return decision


def _late_file_sensor(config: AutomationConfig) -> dg.SensorDefinition:
    @dg.sensor(
        name=LATE_FILE_SENSOR, job_name=BUILD_JOB,
        minimum_interval_seconds=config.late_file_interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=(
            "When a raw feed partition is materialized after its report partition (a late or "
            "re-sent partner file, changed case-management rows, for a month already "
            "reported), requests build_warehouse for exactly those partitions (tags "
            "bdt/trigger=late_file, bdt/late_files); reporting_followups exports them. Starts "
            "watching from the moment it is turned on."))
    def late_file_rebuild(context: dg.SensorEvaluationContext):
        if context.cursor is None:
            start = context.instance.event_log_storage.get_maximum_record_id() or 0
            return dg.SensorResult(cursor=str(start), skip_reason=dg.SkipReason(
                f"watching raw materializations from event {start} on"))
        decision = find_late_partitions(context.instance, int(context.cursor))
        requests = decision.run_requests()
        for key, files in sorted(decision.stale.items()):
            context.log.info(f"rebuilding {key}: late {', '.join(files)}")
        if not requests:
            return dg.SensorResult(cursor=str(decision.cursor), skip_reason=dg.SkipReason(
                "no raw partition changed after its report"))
        return dg.SensorResult(run_requests=requests, cursor=str(decision.cursor))

    return late_file_rebuild


# -- what follows a monthly (or late-file) build -------------------------------------------------

def followup_requests(run: dg.DagsterRun) -> list[dg.RunRequest]:
    """After a successful ``build_warehouse`` run the platform started itself: the export of
    the same partitions (the report's Parquet, the vendors' lists), the readouts across every
    partition (A/B, the model against random targeting, the forecast), as ``bdt build`` runs
    them; after a monthly one also the scorecard e-mails for its month."""
    trigger = run.tags.get(TRIGGER_TAG)
    if run.job_name != BUILD_JOB or trigger not in (MONTHLY_SCHEDULE, "late_file"):
        return []
    if RANGE_START not in run.tags or RANGE_END not in run.tags:
        return []
    common = {TRIGGER_TAG: trigger, AFTER_RUN_TAG: run.run_id}
    if MONTH_TAG in run.tags:
        common[MONTH_TAG] = run.tags[MONTH_TAG]
    requests = [dg.RunRequest(
        run_key=f"{EXPORT_JOB}:{run.run_id}", job_name=EXPORT_JOB,
        tags={RANGE_START: run.tags[RANGE_START], RANGE_END: run.tags[RANGE_END], **common}),
        dg.RunRequest(run_key=f"{READOUT_JOB}:{run.run_id}", job_name=READOUT_JOB,
                      tags=common)]
    if trigger == MONTHLY_SCHEDULE and MONTH_TAG in run.tags:
        from bdt_platform.ops.scorecard_mail import scorecard_run_config

        requests.append(dg.RunRequest(
            run_key=f"{SCORECARD_JOB}:{run.run_id}", job_name=SCORECARD_JOB,
            run_config=scorecard_run_config(run.tags[MONTH_TAG]), tags=common))
    return requests


def _followups_sensor(jobs: Sequence) -> dg.SensorDefinition:
    requested = [job for job in jobs if job.name in (EXPORT_JOB, READOUT_JOB, SCORECARD_JOB)]
    monitored = [job for job in jobs if job.name == BUILD_JOB]

    @dg.run_status_sensor(
        name=FOLLOWUPS_SENSOR, run_status=dg.DagsterRunStatus.SUCCESS,
        monitored_jobs=monitored, request_jobs=requested,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "When a build_warehouse run of the monthly_reporting schedule or of "
            "late_file_rebuild succeeds: export_reports for the same partitions, "
            "build_readouts, and after a monthly run scorecard_mail for its month."))
    def reporting_followups(context: dg.RunStatusSensorContext):
        requests = followup_requests(context.dagster_run)
        if not requests:
            return dg.SkipReason(f"run {context.dagster_run.run_id[:8]} was not started by a "
                                 "schedule or late_file_rebuild")
        return requests

    return reporting_followups


@dataclass
class Automation:
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(jobs: Sequence, config: AutomationConfig | None = None) -> Automation:
    """The schedules and sensors for ``config`` (default: the shipped ``schedules.yaml``);
    ``jobs``: the definitions' jobs (the follow-up sensor requests export and scorecard runs).
    The inbox sensor is among the sensors, at the configured interval."""
    config = config or load_automation_config()
    return Automation(
        schedules=[_monthly_schedule(config), _casemgmt_schedule(config)],
        sensors=[_inbox_sensor(config), _late_file_sensor(config), _followups_sensor(jobs)])
