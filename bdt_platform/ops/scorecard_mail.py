"""Scheduled reporting: each state's KPI scorecard by e-mail, only that state's numbers.

The job ``scorecard_mail`` (one op) runs after the monthly reporting run succeeds (the
``reporting_followups`` sensor in ``ops/schedules.py`` requests it for the month just built),
or by hand from the UI (Launchpad, config ``ops: {send_scorecards: {config: {month:
"2024-03"}}}``). For every state with recipients in the configuration it sends one message
to that state's list: an HTML table (the report site's scorecard metrics, this month, last
month, the change, the state's target and whether it is missed) and the same numbers as a CSV
attachment. Every number comes from the metric layer (``bdt_platform.metrics.MetricLayer``),
read from the warehouse snapshot the build published, exactly what the report site shows. A
state without a report row for the month gets no message (logged). Over SMTP with optional
STARTTLS and sign-in; a message that cannot be sent fails the run after the others were tried
(so ``run_failure_alert`` says so).
"""


import csv
import datetime as dt
import html
import io
import math
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

import dagster as dg

from bdt_platform.core import partitions as parts
from bdt_platform.ops.smtp import SmtpMailer, smtp_settings
from bdt_platform.storage.warehouse import Warehouse

JOB_NAME = "scorecard_mail"
OP_NAME = "send_scorecards"
CSV_COLUMNS = ["state", "month", "metric", "label", "unit", "value", "previous_month",
               "target", "misses_target"]


class ScorecardMailer(SmtpMailer):
    """Where scorecards go: the SMTP server and sender (``SmtpMailer``), and each state's
    recipients; which metrics (the report site's targets file) and the dbt project (metric
    definitions)."""

    recipients: dict[str, list[str]] = {}
    dbt_project_dir: str
    targets_path: str


def build_mailer(settings, mail_config) -> ScorecardMailer:
    """The resource from settings (dbt project, targets file, SMTP password) and
    ``schedules.MailConfig``."""
    return ScorecardMailer(
        **smtp_settings(settings, mail_config),
        recipients={state: list(addresses) for state, addresses in mail_config.recipients.items()},
        dbt_project_dir=str(settings.dbt_project_dir),
        targets_path=str(settings.site_targets_path))


# -- the numbers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    metric: str
    label: str
    unit: str
    value: float | None
    previous: float | None
    target: float | None
    misses: bool


@dataclass(frozen=True)
class Scorecard:
    state: str
    month: dt.date
    lines: list[Line]


def _value(frame, month: dt.date, name: str) -> float | None:
    row = frame[frame["month"] == month]
    if row.empty:
        return None
    value = float(row.iloc[0][name])
    return None if math.isnan(value) else value


def scorecard_for(layer, state: str, month: dt.date, targets_path: Path) -> Scorecard | None:
    """The state's scorecard for ``month`` from the metric layer, or None without report data
    for that state and month."""
    from bdt_platform.site.targets import load_targets

    if (state, month) not in set(layer.partitions()):
        return None
    metrics = {m.name: m for m in layer.metrics()}
    targets = load_targets(Path(targets_path), metrics)
    names = list(targets.scorecard)
    previous = parts.add_months(month, -1)
    frame = layer.query(names, by=("state", "month"), states=[state], months=(previous, month))
    lines = []
    for name in names:
        metric = metrics[name]
        value = _value(frame, month, name)
        target = targets.targets.get(name)
        lines.append(Line(name, metric.label, metric.unit, value, _value(frame, previous, name),
                          target.value_for(state) if target else None,
                          bool(target and target.misses(state, value))))
    return Scorecard(state, month, lines)


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "rate":
        return f"{value:.1%}"
    if unit == "usd":
        return f"${value:,.2f}"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def render_html(card: Scorecard, metrics_note: str = "") -> str:
    rows = []
    for line in card.lines:
        change = ("–" if line.value is None or line.previous is None
                  else ("+" if line.value >= line.previous else "") + _shown(
                      line.value - line.previous, line.unit))
        flag = " &#9873; misses target" if line.misses else ""
        rows.append(
            "<tr>"
            f"<td>{html.escape(line.label)}</td>"
            f"<td style=\"text-align:right\">{html.escape(_shown(line.value, line.unit))}</td>"
            f"<td style=\"text-align:right\">{html.escape(_shown(line.previous, line.unit))}</td>"
            f"<td style=\"text-align:right\">{html.escape(change)}</td>"
            f"<td style=\"text-align:right\">{html.escape(_shown(line.target, line.unit))}"
            f"{flag}</td></tr>")
    title = f"KPI scorecard: {card.state}, {card.month:%B %Y}"
    return (
        "<!doctype html><html><body style=\"font-family:sans-serif\">"
        f"<h2>{html.escape(title)}</h2>"
        "<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">"
        "<tr><th>metric</th><th>this month</th><th>last month</th><th>change</th>"
        "<th>target</th></tr>" + "".join(rows) + "</table>"
        f"<p>{html.escape(metrics_note)}The same numbers are attached as CSV. Every number is "
        "the platform's metric definition (bdt metrics list); the report site shows the "
        "records behind each one.</p></body></html>")


def render_csv(card: Scorecard) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in card.lines:
        writer.writerow([card.state, f"{card.month:%Y-%m}", line.metric, line.label, line.unit,
                         "" if line.value is None else repr(line.value),
                         "" if line.previous is None else repr(line.previous),
                         "" if line.target is None else repr(line.target),
                         "true" if line.misses else "false"])
    return out.getvalue()


def build_message(card: Scorecard, sender: str, recipients: list[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"KPI scorecard {card.state} {card.month:%Y-%m}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain="bdt-platform")
    lines = [f"KPI scorecard for {card.state}, {card.month:%B %Y}", ""]
    lines += [f"{line.label}: {_shown(line.value, line.unit)}" for line in card.lines]
    message.set_content("\n".join(lines) + "\n")
    message.add_alternative(render_html(card), subtype="html")
    message.add_attachment(render_csv(card).encode(), maintype="text", subtype="csv",
                           filename=f"scorecard_{card.state}_{card.month:%Y%m}.csv")
    return message


def metric_layer_for(warehouse: Warehouse, dbt_project_dir: str):
    """The metric layer on the snapshot the build published (DuckDB), or the warehouse itself
    (BigQuery): the report site's numbers, without holding the warehouse's write lock."""
    from bdt_platform.metrics import MetricLayer
    from bdt_platform.metrics.snapshot import SnapshotReader

    layer = MetricLayer.for_warehouse(warehouse, Path(dbt_project_dir))
    snapshot = getattr(warehouse, "snapshot_path", None)
    if snapshot:
        layer = MetricLayer(layer.catalog, layer.compiler, SnapshotReader(Path(snapshot)))
    return layer


@dataclass
class Sent:
    state: str
    recipients: list[str]
    outcome: str  # sent | no data | FAILED: ...


def send_scorecards(mailer: ScorecardMailer, layer, month: dt.date) -> list[Sent]:
    """One message per configured state with data for ``month``, to that state's recipients."""
    results = []
    for state in sorted(mailer.recipients, key=parts.STATES.index):
        addresses = list(mailer.recipients[state])
        if not addresses:
            continue
        card = scorecard_for(layer, state, month, Path(mailer.targets_path))
        if card is None:
            results.append(Sent(state, addresses, f"no data for {state} {month:%Y-%m}; "
                                                  "nothing sent"))
            continue
        try:
            mailer.send(build_message(card, mailer.sender, addresses))
            results.append(Sent(state, addresses, "sent"))
        except (OSError, smtplib.SMTPException) as exc:
            results.append(Sent(state, addresses, f"FAILED: {type(exc).__name__}: "
                                                  f"{' '.join(str(exc).split())[:300]}"))
    return results


# -- the job -------------------------------------------------------------------------------------

class ScorecardMailConfig(dg.Config):
    """The month whose scorecards to send (``YYYY-MM``)."""

    month: str


def scorecard_run_config(month: str) -> dict:
    return {"ops": {OP_NAME: {"config": {"month": month}}}}


@dg.op(name=OP_NAME, description="E-mail each configured state its KPI scorecard for the month "
                                 "(HTML + CSV), numbers from the metric layer.")
def send_scorecards_op(context: dg.OpExecutionContext, config: ScorecardMailConfig,
                       scorecard_mailer: ScorecardMailer, warehouse: Warehouse):
    month = parts.parse_month(config.month)
    if not scorecard_mailer.recipients:
        context.log.info("no scorecard recipients configured (schedules.yaml scorecard_mail)")
    layer = metric_layer_for(warehouse, scorecard_mailer.dbt_project_dir)
    layer.refresh()
    results = send_scorecards(scorecard_mailer, layer, month)
    for result in results:
        context.log.info(f"{result.state} -> {', '.join(result.recipients)}: {result.outcome}")
    failed = [r for r in results if r.outcome.startswith("FAILED")]
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} scorecard message(s) not sent via "
                        f"{scorecard_mailer.describe()}: "
                        + "; ".join(f"{r.state}: {r.outcome}" for r in failed))
    return dg.Output(None, metadata={
        "month": f"{month:%Y-%m}",
        "sent": dg.MetadataValue.json([r.state for r in results if r.outcome == "sent"]),
        "no_data": dg.MetadataValue.json([r.state for r in results
                                          if r.outcome.startswith("no data")])})


@dg.job(name=JOB_NAME, description="E-mail each configured state's KPI scorecard for a month "
                                   "(after the monthly reporting run).")
def scorecard_mail_job():
    send_scorecards_op()


SCORECARD_JOBS = [scorecard_mail_job]
