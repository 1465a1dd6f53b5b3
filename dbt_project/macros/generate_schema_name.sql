{#-
  Use a model's custom schema verbatim (`staging`, `intermediate`, `marts`), not dbt's default
  `<target schema>_<custom schema>`. Models without a custom schema go to the target's schema.
  The same names are the BigQuery datasets in production.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none or (custom_schema_name | trim) == '' -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
