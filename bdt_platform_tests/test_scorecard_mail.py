"""The scorecard e-mail itself, through a real SMTP server on 127.0.0.1: subject, recipients,
an HTML body marking missed targets, the CSV attachment with the exact values; the mailer from
the configuration; an unreachable server is an error naming it. (The monthly run's mails, with
the metric layer's numbers per state, are tested in test_schedules.py on its built world.)"""

import csv
import datetime as dt
import io
import smtplib

import pytest

from bdt_platform.ops.schedules import MailConfig
from bdt_platform.ops.scorecard_mail import (CSV_COLUMNS, Line, Scorecard, ScorecardMailer,
                                             build_mailer, build_message, render_csv)

from .conftest import make_settings
from .smtp_receiver import Receiver

CARD = Scorecard("PA", dt.date(2024, 3, 1), [
    Line("approvals", "Approvals", "count", 41.0, 38.0, None, False),
    Line("approval_rate", "Approval rate", "rate", 0.4375, 0.5, 0.5, True),
    Line("cost_per_enrollment", "Cost per enrollment", "usd", None, 12.5, 60.0, False),
])


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


def test_a_scorecard_message_over_smtp(receiver):
    mailer = ScorecardMailer(smtp_port=receiver.port, dbt_project_dir=".", targets_path=".")
    mailer.send(build_message(CARD, "reports@bdt.example", ["a@example.org", "b@example.org"]))
    [got] = receiver.messages
    assert got.sender == "reports@bdt.example"
    assert got.recipients == ["a@example.org", "b@example.org"]
    assert got.message["Subject"] == "KPI scorecard PA 2024-03"
    body = got.html()
    assert "KPI scorecard: PA, March 2024" in body
    assert "43.8%" in body and "misses target" in body and "+3" in body
    assert body.count("misses target") == 1
    [(name, text)] = got.attachments().items()
    assert name == "scorecard_PA_202403.csv" and text == render_csv(CARD)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == CSV_COLUMNS
    assert [(r["metric"], r["value"], r["misses_target"]) for r in rows] == [
        ("approvals", "41.0", "false"), ("approval_rate", "0.4375", "true"),
        ("cost_per_enrollment", "", "false")]
    assert got.message.get_body(("plain",)).get_content().startswith("KPI scorecard for PA")


def test_the_mailer_from_configuration_and_settings(tmp_path):
    settings = make_settings(tmp_path / "home")
    mailer = build_mailer(settings, MailConfig(smtp_host="mail.example.org", smtp_port=587,
                                               starttls=True, smtp_user="bdt",
                                               sender="r@example.org",
                                               recipients={"PA": ("a@example.org",)}))
    assert (mailer.smtp_host, mailer.smtp_port, mailer.starttls) == ("mail.example.org", 587,
                                                                     True)
    assert mailer.recipients == {"PA": ["a@example.org"]} and mailer.smtp_password is None
    assert mailer.targets_path == str(settings.site_targets_path)
    assert mailer.describe() == "smtp://mail.example.org:587 (STARTTLS)"


def test_the_platform_resources_carry_the_mailer_of_the_schedules_file_in_force(tmp_path):
    """core/resources.py builds it like every other resource: SMTP and recipients from the
    schedules file (BDT_SCHEDULES), the password from settings, never shown by them."""
    from bdt_platform.core.resources import build_resources

    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("scorecard_mail: {smtp_host: mail.example.org, smtp_port: 2525,"
                         " smtp_user: bdt, recipients: {NJ: [nj@example.org]}}\n")
    settings = make_settings(tmp_path / "home", BDT_SCHEDULES=str(schedules),
                             BDT_SMTP_PASSWORD="s3cret-smtp")
    mailer = build_resources(settings, dbt=False)["scorecard_mailer"]
    assert (mailer.smtp_host, mailer.smtp_port, mailer.smtp_user) == ("mail.example.org", 2525,
                                                                      "bdt")
    assert mailer.recipients == {"NJ": ["nj@example.org"]}
    assert mailer.smtp_password == "s3cret-smtp" and "s3cret-smtp" not in repr(settings)
    shipped = build_resources(make_settings(tmp_path / "other"), dbt=False)["scorecard_mailer"]
    assert shipped.recipients == {} and shipped.smtp_password is None


def test_an_unreachable_server_is_an_error():
    mailer = ScorecardMailer(smtp_port=9, dbt_project_dir=".", targets_path=".",
                             timeout_seconds=2)
    with pytest.raises((OSError, smtplib.SMTPException)):
        mailer.send(build_message(CARD, "r@example.org", ["a@example.org"]))
