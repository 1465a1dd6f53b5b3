"""The dbt project (``dbt_project/``) wired into the asset graph with dagster-dbt."""
