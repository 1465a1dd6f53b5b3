"""Operating the platform: alerts when a run fails (schedules and deployment helpers to come)."""
