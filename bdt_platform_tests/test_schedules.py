"""Schedules and the sensors that follow them, ticked with Dagster's test contexts against a real
instance and warehouse: the monthly run builds the month just closed for every state in one run
and its follow-ups export it and ask for the scorecard mail; the nightly case-management extract
asks for exactly the changed partitions; a late partner file after the monthly run rebuilds only
its partition, with a reason explain's run carries; the configuration file sets crons, time zone
and intervals.

One world for the module: NJ and PA x 2024-01..2024-02, ingested once; February is built by the
monthly run, January never is.
"""

import datetime as dt
import shutil
import sqlite3
import time
import zoneinfo
from pathlib import Path

import dagster as dg
import pytest

from bdt_platform.core import partitions as parts
from bdt_platform.core.runs import instance_for
from bdt_platform.explain.history import history as materializations
from bdt_platform.ops import schedules as sch
from bdt_platform.synthetic import generate
from bdt_platform.warehouse.build import BUILD_JOB, EXPORT_JOB, READOUT_JOB

from .conftest import make_settings

JAN, FEB = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
LATE = "mailvendor_PA_202402_mailreturns.csv"
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


class World:
    def __init__(self, root: Path):
        from bdt_platform.definitions import build_definitions

        self.settings = make_settings(root / "home")
        self.defs = build_definitions(self.settings)
        self.instance = instance_for(self.settings)
        self.resources = self.defs.resources
        self.inbox = Path(self.settings.inbox)

    def ingest(self):
        from bdt_platform.inbox.ingest import ingest

        r = self.resources
        result = ingest(self.defs, self.instance, r["inbox"], r["lake"], r["warehouse"],
                        r["casemgmt"], settle_seconds=0, echo=lambda _: None)
        assert result.exit_code == 0, [f.line() for f in result.files]
        return result

    def run(self, request: dg.RunRequest, job_name: str | None = None):
        """Execute a run request in-process, as the daemon's launched run would."""
        job = self.defs.resolve_job_def(request.job_name or job_name)
        result = job.execute_in_process(
            instance=self.instance, tags=request.tags, run_config=request.run_config or {},
            asset_selection=request.asset_selection, raise_on_error=False)
        assert result.success, [e.message for e in result.all_events
                                if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        time.sleep(0.01)
        return result

    def report(self) -> dict[tuple[str, dt.date], dict]:
        frame = self.resources["warehouse"].query("SELECT * FROM reports.outcomes")
        return {(r["state"], r["month"].date() if hasattr(r["month"], "date") else r["month"]):
                dict(r) for r in frame.to_dict("records")}

    def tick(self, name: str, cursor: str | None):
        sensor = self.defs.resolve_sensor_def(name)
        # Test contexts are closed when done: one left open keeps what it opened (e.g. an
        # instance from its ref, which is also Dagster's current definitions-state storage).
        with dg.build_sensor_context(instance=self.instance, cursor=cursor,
                                     definitions=self.defs) as context:
            return sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("schedules")
    world = World(root)
    staging = root / "generated"
    generate(staging, world.settings.casemgmt_sqlite_path, states=["NJ", "PA"],
             months=[JAN, FEB], scale=0.3, seed=5, pii_key=world.settings.pii_key)
    late = staging / "mailvendor" / LATE
    world.late_text = late.read_bytes()
    late.unlink()
    shutil.copytree(staging, world.inbox, dirs_exist_ok=True)
    world.ingest()
    # The late-file sensor is turned on now: it watches from here.
    first = world.tick(sch.LATE_FILE_SENSOR, None)
    assert not first.run_requests and first.cursor is not None
    world.late_cursor = first.cursor
    yield world
    world.instance.dispose()


def test_schedules_and_sensors_are_in_the_definitions_stopped_until_turned_on(world):
    defs = world.defs
    monthly = defs.resolve_schedule_def(sch.MONTHLY_SCHEDULE)
    assert (monthly.cron_schedule, monthly.execution_timezone) == ("0 6 3 * *",
                                                                   "America/New_York")
    assert monthly.job_name == BUILD_JOB
    assert monthly.default_status == dg.DefaultScheduleStatus.STOPPED
    nightly = defs.resolve_schedule_def(sch.CASEMGMT_SCHEDULE)
    assert nightly.cron_schedule == "30 1 * * *" and nightly.job_name == "ingest_feeds"
    assert defs.resolve_sensor_def("inbox_sensor").minimum_interval_seconds == 30
    late = defs.resolve_sensor_def(sch.LATE_FILE_SENSOR)
    assert late.default_status == dg.DefaultSensorStatus.STOPPED
    followups = defs.resolve_sensor_def(sch.FOLLOWUPS_SENSOR)
    assert followups.default_status == dg.DefaultSensorStatus.RUNNING
    assert "scorecard_mail" in {job.name for job in defs.get_repository_def().get_all_jobs()}


def test_crons_time_zone_and_intervals_come_from_the_configuration(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text("time_zone: Europe/Berlin\n"
                    "monthly_reporting: {cron: '15 7 5 * *'}\n"
                    "nightly_casemgmt: {cron: '0 3 * * *'}\n"
                    "inbox_sensor: {interval_seconds: 90}\n"
                    "late_file_rebuild: {interval_seconds: 600}\n"
                    "scorecard_mail: {smtp_host: mail.example.org, smtp_port: 587,"
                    " starttls: true, smtp_user: bdt, sender: r@example.org,"
                    " recipients: {pa: [a@example.org], NJ: b@example.org}}\n"
                    "failure_alerts: {email_to: [ops@example.org]}\n")
    config = sch.load_automation_config(path)
    automation = sch.build_automation([], config)
    monthly, nightly = automation.schedules
    assert (monthly.cron_schedule, monthly.execution_timezone) == ("15 7 5 * *", "Europe/Berlin")
    assert (nightly.cron_schedule, nightly.execution_timezone) == ("0 3 * * *", "Europe/Berlin")
    intervals = {s.name: s.minimum_interval_seconds for s in automation.sensors}
    assert intervals["inbox_sensor"] == 90 and intervals[sch.LATE_FILE_SENSOR] == 600
    assert config.mail.recipients == {"PA": ("a@example.org",), "NJ": ("b@example.org",)}
    assert config.alert_email_to == ("ops@example.org",)
    assert (config.mail.smtp_port, config.mail.starttls, config.mail.smtp_user) == (587, True,
                                                                                    "bdt")
    for text, message in [("monthly_reporting: {cron: '0 25 3 * *'}", "not a valid cron"),
                          ("monthly_reporting: {cron: 'daily'}", "must have 5 fields"),
                          ("time_zone: Mars/Olympus", "not an IANA time zone"),
                          ("inbox_sensor: {interval_seconds: 0}", "positive whole number"),
                          ("scorecard_mail: {smtp_password: x}", "unknown key"),
                          ("scorecard_mail: {recipients: {XX: [a@b.c]}}", "unknown state"),
                          ("failure_alerts: {email_to: [oncall]}", "list of e-mail addresses")]:
        path.write_text(text)
        with pytest.raises(sch.AutomationConfigError, match=message):
            sch.load_automation_config(path)


def test_the_month_just_closed_in_the_schedule_time_zone():
    # 00:30 on 1 March in New York is still February there: the closed month is January.
    assert sch.month_just_closed(dt.datetime(2024, 3, 1, 0, 30, tzinfo=NEW_YORK)) == dt.date(
        2024, 2, 1)
    assert sch.month_just_closed(dt.datetime(2024, 1, 3, 6, tzinfo=NEW_YORK)) == dt.date(
        2023, 12, 1)


def test_monthly_run_builds_the_closed_month_for_all_states_in_one_run(world):
    schedule = world.defs.resolve_schedule_def(sch.MONTHLY_SCHEDULE)
    with dg.build_schedule_context(
            instance=world.instance,
            scheduled_execution_time=dt.datetime(2024, 3, 3, 6, tzinfo=NEW_YORK)) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.run_key == "monthly_reporting:2024-02"
    assert request.tags[sch.RANGE_START] == "2024-02-01|AK"
    assert request.tags[sch.RANGE_END] == "2024-02-01|WY"
    assert request.tags[sch.TRIGGER_TAG] == "monthly_reporting"
    assert request.tags[sch.MONTH_TAG] == "2024-02"

    result = world.run(request, BUILD_JOB)
    report = world.report()
    assert set(report) == {("NJ", FEB), ("PA", FEB)}  # January is not the month closed
    assert report[("PA", FEB)]["pieces_mailed"] == 0  # its mail returns have not come yet
    world.monthly_run = result.dagster_run

    # The follow-ups: the export of the same partitions, the readouts, and the scorecard mail
    # for February.
    success = next(e for e in result.all_events
                   if e.event_type == dg.DagsterEventType.RUN_SUCCESS)
    sensor = world.defs.resolve_sensor_def(sch.FOLLOWUPS_SENSOR)
    with dg.build_run_status_sensor_context(
            sensor_name=sch.FOLLOWUPS_SENSOR, dagster_event=success,
            dagster_instance=world.instance, dagster_run=result.dagster_run) as context:
        export, readouts, mail = sensor(context)
    assert export.job_name == EXPORT_JOB and mail.job_name == sch.SCORECARD_JOB
    assert readouts.job_name == READOUT_JOB and readouts.tags[sch.AFTER_RUN_TAG] == result.run_id
    assert {k: export.tags[k] for k in (sch.RANGE_START, sch.RANGE_END)} == {
        sch.RANGE_START: "2024-02-01|AK", sch.RANGE_END: "2024-02-01|WY"}
    assert export.tags[sch.AFTER_RUN_TAG] == result.run_id
    assert mail.run_config == {"ops": {"send_scorecards": {"config": {"month": "2024-02"}}}}
    world.run(export)
    world.run(readouts, READOUT_JOB)
    assert world.resources["warehouse"].table_exists("reports.ab_readout")
    lake = Path(world.settings.lake)
    assert (lake / "outcomes_report" / "month=2024-02" / "state=PA.parquet").exists()
    assert not (lake / "outcomes_report" / "month=2024-01").exists()



def test_the_monthly_run_mails_each_state_only_its_own_scorecard(world):
    """The scorecard run the follow-ups asked for, against a real SMTP server: each state's
    recipients get that state's numbers only, equal to the metric layer's."""
    import csv
    import io

    from bdt_platform.metrics import MetricLayer
    from bdt_platform.ops.scorecard_mail import ScorecardMailer, scorecard_mail_job
    from bdt_platform.site.targets import load_targets

    from .smtp_receiver import Receiver

    receiver = Receiver()
    try:
        mailer = ScorecardMailer(
            smtp_port=receiver.port, sender="reports@bdt.example",
            recipients={"PA": ["pa-1@example.org", "pa-2@example.org"],
                        "NJ": ["nj@example.org"], "DE": ["de@example.org"]},
            dbt_project_dir=str(world.settings.dbt_project_dir),
            targets_path=str(world.settings.site_targets_path))
        [_, _, mail] = sch.followup_requests(world.monthly_run)
        result = scorecard_mail_job.execute_in_process(
            run_config=mail.run_config, tags=mail.tags, instance=world.instance,
            resources={"scorecard_mailer": mailer, "warehouse": world.resources["warehouse"]})
        assert result.success
    finally:
        receiver.close()
    by_state = {m.message["Subject"]: m for m in receiver.messages}
    assert set(by_state) == {"KPI scorecard NJ 2024-02", "KPI scorecard PA 2024-02"}  # no DE data
    pa, nj = by_state["KPI scorecard PA 2024-02"], by_state["KPI scorecard NJ 2024-02"]
    assert sorted(pa.recipients) == ["pa-1@example.org", "pa-2@example.org"]
    assert nj.recipients == ["nj@example.org"] and pa.sender == "reports@bdt.example"

    layer = MetricLayer.for_settings(world.settings, snapshot=True)
    layer.refresh()
    names = list(load_targets(world.settings.site_targets_path,
                              {m.name: m for m in layer.metrics()}).scorecard)
    for state, received in (("PA", pa), ("NJ", nj)):
        [(filename, text)] = received.attachments().items()
        assert filename == f"scorecard_{state}_202402.csv"
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["state"] for r in rows} == {state} and {r["month"] for r in rows} == {"2024-02"}
        assert [r["metric"] for r in rows] == names
        expected = layer.query(names, states=[state], months=(FEB, FEB)).iloc[0]
        for row in rows:
            value = expected[row["metric"]]
            assert (row["value"] == "") if value != value else float(row["value"]) == value
        body = received.html()
        assert f"KPI scorecard: {state}, February 2024" in body
        other = "NJ" if state == "PA" else "PA"
        assert f"scorecard: {other}" not in body and other not in text
        label = layer.metric("applications").label
        assert label in body

def test_nightly_casemgmt_extracts_exactly_the_changed_partitions(world):
    schedule = world.defs.resolve_schedule_def(sch.CASEMGMT_SCHEDULE)
    resources = {"casemgmt": world.resources["casemgmt"],
                 "warehouse": world.resources["warehouse"]}
    when = dt.datetime(2024, 3, 4, 1, 30, tzinfo=NEW_YORK)

    def tick():
        # Closed when done: its resources open an instance from the ref (see World.tick).
        with dg.build_schedule_context(instance=world.instance, scheduled_execution_time=when,
                                       resources=resources) as context:
            return schedule.evaluate_tick(context)

    nothing = tick()
    assert not nothing.run_requests and "no changes" in nothing.skip_message

    with sqlite3.connect(world.settings.casemgmt_sqlite_path) as db:
        db.execute("UPDATE calls SET updated_at = '2024-03-02T09:00:00+00:00' WHERE rowid = (SELECT "
                   "min(rowid) FROM calls WHERE state = 'NJ' AND started_at LIKE '2024-01%')")
    [request] = tick().run_requests
    assert request.job_name is None  # the schedule's job: ingest_feeds
    assert set(request.asset_selection) == set(sch.CASEMGMT_KEYS)
    assert {op["config"]["only"][0] for op in request.run_config["ops"].values()} == {
        "2024-01-01|NJ"}
    assert request.tags[sch.RANGE_START] == request.tags[sch.RANGE_END] == "2024-01-01|NJ"
    result = world.run(request, "ingest_feeds")
    materialized = {(m.asset_key.path[-1], m.partition) for m in (
        e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    assert materialized == {(t, "2024-01-01|NJ") for t in ("clients", "applications", "calls")}
    assert not tick().run_requests  # caught up


def test_a_late_file_after_the_monthly_run_rebuilds_only_its_partition(world):
    # The nightly extract above changed NJ January, which was never reported: no rebuild.
    quiet = world.tick(sch.LATE_FILE_SENSOR, world.late_cursor)
    assert not quiet.run_requests
    cursor = quiet.cursor

    path = world.inbox / "mailvendor" / LATE
    path.write_bytes(world.late_text)
    world.ingest()
    decision = world.tick(sch.LATE_FILE_SENSOR, cursor)
    [request] = decision.run_requests
    assert request.tags[sch.RANGE_START] == request.tags[sch.RANGE_END] == "2024-02-01|PA"
    assert request.tags[sch.TRIGGER_TAG] == "late_file"
    assert LATE in request.tags[sch.LATE_FILES_TAG]
    before = world.report()
    result = world.run(request, BUILD_JOB)
    after = world.report()
    assert after[("PA", FEB)]["pieces_mailed"] > 0
    assert after[("NJ", FEB)] == before[("NJ", FEB)]

    # Explain's latest materialization of PA February is that run, which says why.
    history = materializations(world.instance, sch.REPORT_KEY, parts.partition_key("PA", FEB))
    run = world.instance.get_run_by_id(history[0].run_id)  # newest first
    assert run.run_id == result.run_id
    assert run.tags[sch.TRIGGER_TAG] == "late_file" and LATE in run.tags[sch.LATE_FILES_TAG]
    nj = materializations(world.instance, sch.REPORT_KEY, parts.partition_key("NJ", FEB))
    assert [m.run_id for m in nj] == [world.monthly_run.run_id]

    # Nothing more to do; the rebuild is exported, and gets no scorecard mail.
    assert not world.tick(sch.LATE_FILE_SENSOR, decision.cursor).run_requests
    [export, readouts] = sch.followup_requests(result.dagster_run)
    assert export.job_name == EXPORT_JOB and readouts.job_name == READOUT_JOB
    assert export.tags[sch.RANGE_START] == export.tags[sch.RANGE_END] == "2024-02-01|PA"


def test_runs_started_by_hand_have_no_followups(world):
    run = world.monthly_run
    manual = run.with_tags({k: v for k, v in run.tags.items() if k != sch.TRIGGER_TAG})
    assert sch.followup_requests(manual) == []
