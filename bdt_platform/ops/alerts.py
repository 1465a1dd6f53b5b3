"""Alerts: when any run of the code location fails, a JSON message to the configured webhook
and an e-mail to the configured addresses, each naming the run, its job, each failing step and
its error.

The webhook (``BDT_ALERT_WEBHOOK_URL``, read by settings) is where an operations team's chat or
paging tool listens; the e-mail goes to ``failure_alerts.email_to`` in the schedules file
through its SMTP server (``scorecard_mail``). Neither configured, failures are only logged.
Sending is best effort: an unreachable webhook or mail server is logged and never fails the
sensor (the run's failure is in the instance either way).
"""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dagster as dg

from bdt_platform.ops.smtp import SmtpMailer, smtp_settings

ALERT_SENSOR = "run_failure_alert"
MAX_ERROR_CHARS = 2000


class AlertWebhook(dg.ConfigurableResource):
    """Where failure alerts go: an HTTP(S) URL that takes a JSON POST, or none."""

    url: str | None = None
    timeout_seconds: float = 10.0

    def send(self, message: dict) -> str:
        """POST ``message``; a one-line outcome (sent, not configured, or why it failed)."""
        if not self.url:
            return "no alert webhook configured (BDT_ALERT_WEBHOOK_URL)"
        request = urllib.request.Request(
            self.url, data=json.dumps(message).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "bdt-platform"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return f"alert sent (HTTP {response.status})"
        except (urllib.error.URLError, OSError) as exc:
            return f"alert NOT sent to the webhook: {' '.join(str(exc).split())}"


class AlertMailer(SmtpMailer):
    """Who gets failure alerts by e-mail (``to``), through the SMTP server (``SmtpMailer``)."""

    to: list[str] = []

    def alert(self, message: dict) -> str:
        """E-mail ``message`` (``failure_message``); a one-line outcome."""
        if not self.to:
            return "no alert e-mail configured (schedules file: failure_alerts.email_to)"
        mail = EmailMessage()
        mail["Subject"] = message["text"].splitlines()[0]
        mail["From"] = self.sender
        mail["To"] = ", ".join(self.to)
        mail["Date"] = formatdate(localtime=True)
        mail["Message-ID"] = make_msgid(domain="bdt-platform")
        lines = [message["text"], "", f"run id: {message['run_id']}", f"job: {message['job']}"]
        lines += [f"tag {name}: {value}" for name, value in sorted(message["tags"].items())]
        for step in message["failed_steps"]:
            lines += ["", f"step {step['step']}:", step["error"]]
        if not message["failed_steps"] and message["run_error"]:
            lines += ["", message["run_error"]]
        mail.set_content("\n".join(lines) + "\n")
        try:
            self.send(mail)
        except (OSError, smtplib.SMTPException) as exc:
            return (f"alert NOT e-mailed via {self.describe()}: "
                    f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        return f"alert e-mailed to {', '.join(self.to)}"


def build_alert_mailer(settings, mail_config, to) -> AlertMailer:
    """The resource from settings (the SMTP password), ``schedules.MailConfig`` and the
    addresses (``AutomationConfig.alert_email_to``)."""
    return AlertMailer(**smtp_settings(settings, mail_config), to=list(to))


def failure_message(context: dg.RunFailureSensorContext) -> dict:
    """What an alert says: the run, its job, when, and each failing step with its error."""
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = event.event_specific_data.error
        steps.append({"step": event.step_key, "cause": _root_cause(error),
                      "error": (error.to_string() if error else "")[:MAX_ERROR_CHARS]})
    run_error = context.failure_event.message or ""
    lines = [f"bdt-platform: run {run.run_id[:8]} of job {run.job_name} failed"]
    lines += [f"- step {s['step']}: {s['cause']}" for s in steps] or [f"- {run_error}"]
    return {"text": "\n".join(lines), "run_id": run.run_id, "job": run.job_name,
            "tags": {k: v for k, v in run.tags.items() if not k.startswith("dagster/step")},
            "failed_steps": steps, "run_error": run_error[:MAX_ERROR_CHARS]}


def _root_cause(error) -> str:
    """``Class: message`` of the innermost error (what the step's own code raised), one line."""
    if error is None:
        return ""
    while error.cause is not None:
        error = error.cause
    return " ".join(error.message.split())[:300]  # the message reads "Class: text"


@dg.run_failure_sensor(
    name=ALERT_SENSOR,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When a run of any job here fails, posts a JSON alert (run, job, each failing "
                "step and its error) to the webhook in BDT_ALERT_WEBHOOK_URL and e-mails it to "
                "failure_alerts.email_to (schedules file); neither set, logs it.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertWebhook,
                      alert_mail: AlertMailer):
    message = failure_message(context)
    outcomes = [alerts.send(message), alert_mail.alert(message)]
    context.log.warning("\n".join([message["text"], *outcomes]))


ALERT_SENSORS = [run_failure_alert]
