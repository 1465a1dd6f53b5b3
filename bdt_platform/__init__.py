"""bdt-platform: a Dagster asset-based data platform for benefits outreach."""

__version__ = "0.1.0"
