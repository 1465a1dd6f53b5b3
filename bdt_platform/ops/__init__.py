"""Operating the platform: schedules and the sensors that follow them (``schedules.py``), the
scorecard e-mails after the monthly run (``scorecard_mail.py``), and alerts when a run fails
(``alerts.py``)."""
