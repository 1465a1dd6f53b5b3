"""Sending e-mail over SMTP: the server, how to sign in, and who it is from; shared by the
scorecard e-mail (``scorecard_mail.py``) and the failure alert (``alerts.py``). The server
and sender come from the schedules file's ``scorecard_mail`` section, the password from
settings (``BDT_SMTP_PASSWORD``)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import dagster as dg


class SmtpMailer(dg.ConfigurableResource):
    """An SMTP server that takes the platform's messages, with optional STARTTLS and sign-in."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    sender: str = "bdt-platform@localhost"
    timeout_seconds: float = 30.0

    def send(self, message: EmailMessage) -> None:
        """Send one message (STARTTLS first when configured; sign in when a user is set)."""
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_seconds) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.smtp_user:
                smtp.login(self.smtp_user, self.smtp_password or "")
            smtp.send_message(message)

    def describe(self) -> str:
        return f"smtp://{self.smtp_host}:{self.smtp_port}" + (" (STARTTLS)" if self.starttls
                                                              else "")


def smtp_settings(settings, mail_config) -> dict:
    """The ``SmtpMailer`` fields from settings (the password) and ``schedules.MailConfig``."""
    return dict(
        smtp_host=mail_config.smtp_host, smtp_port=mail_config.smtp_port,
        starttls=mail_config.starttls, smtp_user=mail_config.smtp_user,
        # A secret: named, never copied into the resource's config (the UI shows config);
        # the value itself only when settings came from a mapping (tests).
        smtp_password=(dg.EnvVar("BDT_SMTP_PASSWORD") if settings.smtp_password_in_process_env
                       else settings.smtp_password),
        sender=mail_config.sender)
