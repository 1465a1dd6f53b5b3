"""Alerts: when any run of the code location fails, a JSON message to the configured webhook
naming the run, its job, each failing step and its error.

The webhook (``BDT_ALERT_WEBHOOK_URL``, read by settings) is where an operations team's chat or
paging tool listens; unset, failures are only logged. Sending is best effort: an unreachable
webhook is logged and never fails the sensor (the run's failure is in the instance either way).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import dagster as dg

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
                "step and its error) to the webhook in BDT_ALERT_WEBHOOK_URL; unset, logs it.",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alerts: AlertWebhook):
    message = failure_message(context)
    outcome = alerts.send(message)
    context.log.warning(f"{message['text']}\n{outcome}")


ALERT_SENSORS = [run_failure_alert]
