-- The calendar MetricFlow joins metrics to (one row per day, 2000-2039): required by dbt's
-- semantic layer for `metric_time`. Built once per run; a few thousand rows.
{{ config(materialized='table') }}
{{ bdt_day_spine('2000-01-01', '2040-01-01') }}
