"""The ground floor every flow folder stands on: settings (the one place that reads the
environment), the resources built from them, the state x month partitions, tokenizing PII, the
Dagster instance and how runs are started and recorded."""
