"""A run that fails sends an alert to the webhook and by e-mail: a real HTTP receiver on
127.0.0.1 gets the JSON naming the run, its job, the failing step and its error, and a real SMTP
server gets the same as a message; an unreachable webhook or mail server is said, not
raised."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from bdt_platform.core.settings import SettingsError
from bdt_platform.ops.alerts import ALERT_SENSOR, AlertMailer, AlertWebhook, run_failure_alert

from .conftest import make_settings


@pytest.fixture
def receiver():
    """An HTTP server on a free port of 127.0.0.1 keeping every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "type": self.headers["Content-Type"],
                             "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/bdt", received
    server.shutdown()
    server.server_close()


@dg.op
def load_partition():
    raise RuntimeError("warehouse file is corrupt: raw.eligibility")


@dg.job
def nightly_load():
    load_partition()


def _failed_run(instance: dg.DagsterInstance):
    result = nightly_load.execute_in_process(instance=instance, raise_on_error=False,
                                             tags={"bdt/partner": "paagency"})
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE]
    return result.dagster_run, failure


def test_a_failed_run_posts_an_alert_naming_the_run_step_and_error(tmp_path, receiver):
    url, received = receiver
    settings = make_settings(tmp_path / "home", BDT_ALERT_WEBHOOK_URL=url)
    from bdt_platform.core.resources import build_resources

    resources = build_resources(settings, dbt=False)
    webhook = resources["alerts"]
    assert webhook.url == url and url not in repr(settings)
    assert resources["alert_mail"].to == []  # the shipped schedules file e-mails nobody
    with dg.instance_for_test() as instance:
        run, failure = _failed_run(instance)
        context = dg.build_run_status_sensor_context(
            sensor_name=ALERT_SENSOR, dagster_event=failure, dagster_instance=instance,
            dagster_run=run, resources={"alerts": webhook,
                                        "alert_mail": resources["alert_mail"]}
        ).for_run_failure()
        run_failure_alert(context)
    [alert] = received
    assert alert["path"] == "/hooks/bdt" and alert["type"] == "application/json"
    message = alert["json"]
    assert message["run_id"] == run.run_id and message["job"] == "nightly_load"
    assert message["tags"]["bdt/partner"] == "paagency"
    [step] = message["failed_steps"]
    assert step["step"] == "load_partition"
    assert "warehouse file is corrupt: raw.eligibility" in step["error"]
    assert message["text"].startswith(f"bdt-platform: run {run.run_id[:8]} of job nightly_load "
                                      "failed")
    assert "step load_partition: RuntimeError: warehouse file is corrupt" in message["text"]


def test_a_failed_run_is_e_mailed_naming_the_run_step_and_error(tmp_path):
    """The addresses and the SMTP server from the schedules file in force, through a real
    SMTP server on 127.0.0.1."""
    from bdt_platform.core.resources import build_resources

    from .smtp_receiver import Receiver

    smtp = Receiver()
    try:
        schedules = tmp_path / "schedules.yaml"
        schedules.write_text(
            f"scorecard_mail: {{smtp_port: {smtp.port}, sender: bdt@ops.example}}\n"
            "failure_alerts: {email_to: [oncall@ops.example, data@ops.example]}\n")
        settings = make_settings(tmp_path / "home", BDT_SCHEDULES=str(schedules))
        resources = build_resources(settings, dbt=False)
        with dg.instance_for_test() as instance:
            run, failure = _failed_run(instance)
            with dg.build_run_status_sensor_context(
                    sensor_name=ALERT_SENSOR, dagster_event=failure, dagster_instance=instance,
                    dagster_run=run, resources={"alerts": resources["alerts"],
                                                "alert_mail": resources["alert_mail"]}
            ) as context:
                run_failure_alert(context.for_run_failure())
    finally:
        smtp.close()
    [mail] = smtp.messages
    assert mail.sender == "bdt@ops.example"
    assert mail.recipients == ["oncall@ops.example", "data@ops.example"]
    assert mail.message["Subject"] == (f"bdt-platform: run {run.run_id[:8]} of job nightly_load "
                                       "failed")
    body = mail.message.get_content()
    assert f"run id: {run.run_id}" in body and "tag bdt/partner: paagency" in body
    assert "step load_partition:" in body
    assert "RuntimeError: warehouse file is corrupt: raw.eligibility" in body


def test_an_unreachable_mail_server_or_no_address_is_said_not_raised():
    message = {"text": "bdt-platform: run 1 failed", "run_id": "1", "job": "j", "tags": {},
               "failed_steps": [], "run_error": "boom"}
    assert AlertMailer().alert(message).startswith("no alert e-mail configured")
    dead = AlertMailer(smtp_port=9, to=["a@b.example"], timeout_seconds=2)
    assert dead.alert(message).startswith("alert NOT e-mailed via smtp://127.0.0.1:9:")


def test_no_webhook_or_an_unreachable_one_is_said_not_raised(receiver):
    url, received = receiver
    assert AlertWebhook().send({"text": "x"}).startswith("no alert webhook configured")
    dead = AlertWebhook(url="http://127.0.0.1:9/nothing-listens", timeout_seconds=2)
    assert dead.send({"text": "x"}).startswith("alert NOT sent to the webhook:")
    assert AlertWebhook(url=url).send({"text": "x"}) == "alert sent (HTTP 204)"
    assert received[0]["json"] == {"text": "x"}


def test_the_webhook_setting_must_be_an_http_url(tmp_path):
    with pytest.raises(SettingsError, match="BDT_ALERT_WEBHOOK_URL must be an http"):
        make_settings(tmp_path / "home", BDT_ALERT_WEBHOOK_URL="smtp://mail")
    assert make_settings(tmp_path / "home").alert_webhook_url is None


def test_the_alert_sensor_is_in_the_definitions_and_running_by_default(platform):
    _, defs, _ = platform
    sensor = defs.resolve_sensor_def(ALERT_SENSOR)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert {"alerts", "alert_mail"} <= sensor.required_resource_keys
