{#-
  Marts must not carry PII. Fails with one row per built mart column whose name is a PII field
  (names, address, city, zip, phone, email, date of birth, ssn). Reads each mart's actual columns
  from the warehouse, so it also catches a `select *` that lets PII through.
-#}
{{ config(meta={'dagster': {'ref': {'name': 'dim_person'}}}) }}
-- depends_on: {{ ref('dim_person') }}, {{ ref('fct_outreach') }}, {{ ref('fct_calls') }}
-- depends_on: {{ ref('fct_applications') }}, {{ ref('fct_enrollment_outcomes') }}
{%- set forbidden = [
    'first_name', 'last_name', 'middle_name', 'full_name', 'name', 'date_of_birth', 'dob',
    'address_line1', 'address_line2', 'address', 'street', 'city', 'zip', 'zip5', 'zip_code',
    'phone', 'phone_number', 'email', 'ssn',
] -%}
{%- set offending = [] -%}
{%- if execute -%}
    {%- for node in graph.nodes.values()
          if node.resource_type == 'model' and node.package_name == project_name
             and node.fqn[1] == 'marts' -%}
        {%- set relation = adapter.get_relation(node.database, node.schema, node.alias) -%}
        {%- if relation is not none -%}
            {%- for column in adapter.get_columns_in_relation(relation) -%}
                {%- if column.name | lower in forbidden -%}
                    {%- do offending.append(node.name ~ '.' ~ column.name) -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endif -%}
    {%- endfor -%}
{%- endif -%}

{%- if offending | length == 0 %}
select offending_column from (select 'none' as offending_column) as t where 1 = 0
{%- else %}
{%- for col in offending %}
select '{{ col }}' as offending_column{% if not loop.last %} union all{% endif %}
{%- endfor %}
{%- endif %}
