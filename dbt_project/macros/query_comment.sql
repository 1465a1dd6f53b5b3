{#-
  The comment dbt puts on every query (dbt_project.yml `query-comment`). On BigQuery it also
  becomes the job's labels (`job-label: true`), like the platform's own jobs: `app`, `asset`
  (`<schema>__<model>`, the Dagster asset key), `partition` (the partition vars as
  `<min_month>_<first state>__<max_month>_<last state>`, `none` without vars). dbt adds
  `dbt_invocation_id`. Label values are sanitized by dbt-bigquery (lower case, 63 characters).
-#}
{% macro bdt_query_comment(node) %}
    {%- set labels = {'app': 'bdt-platform', 'asset': 'none', 'partition': 'none'} -%}
    {%- if node is not none -%}
        {%- do labels.update({'asset': (node.schema ~ '__' ~ node.name) if node.resource_type == 'model'
                                       else (node.resource_type ~ '__' ~ node.name)}) -%}
    {%- endif -%}
    {%- set sel = bdt_partition_selection(strict=false) -%}
    {%- if sel.min_month is not none and sel.max_month is not none and sel.states -%}
        {%- set start = sel.min_month ~ '_' ~ sel.states[0] -%}
        {%- set end = sel.max_month ~ '_' ~ sel.states[-1] -%}
        {%- do labels.update({'partition': start if start == end else start ~ '__' ~ end}) -%}
    {%- endif -%}
    {{- return(tojson(labels)) -}}
{% endmacro %}
