"""Operating the platform: schedules and the sensors that follow them (``schedules.py``), the
scorecard e-mails after the monthly run (``scorecard_mail.py``), alerts when a run fails
(``alerts.py``), and the retention of the event log (``retention.py``, ``bdt prune``)."""
