"""bdt-platform: a Dagster asset-based data platform for benefits outreach."""

import warnings

__version__ = "0.1.0"

# The partitioned assets run a backfill as one run per range (``backfill_policy``): Dagster
# marks the parameter beta and warns once per asset at every import of the definitions, in
# every process (the CLI, the webserver, the daemon, each test). bdt pins Dagster
# (pyproject.toml) and the behaviour is tested (test_definitions, test_runs). Other beta
# warnings still show.
warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function",
                        category=Warning)
