{#-
  The incremental person dimension (models/marts/dim_person.sql).

  A person's row is computed from their own rows only (their appearances in int_people__unioned
  and their client records in stg_casemgmt__clients), so a build needs to compute again only
  the people whose rows changed. Which did is found without any partition bookkeeping: each row
  of the dimension keeps `_appearance_rows` (how many rows it was computed from) and
  `_appearance_digest` (the XOR of a 64-bit fingerprint of each of those rows: order-free, one
  hash aggregate over the history, no sort). Those rows are unique (an eligibility row per file
  and record id, a client per client_id), so no two equal fingerprints cancel. A person whose
  count or digest differs from the table's, or who is new, is computed again from all of their
  history and replaces their row (unique_key person_token); a person with no row left anywhere
  (a resent file without them, a client merged into another person) is deleted by the post-hook.
  This holds whichever partitions the run was given, so a run of one partition, a run without
  dim_person in it, or rows changed under a late file never leave the dimension behind: the next
  run that builds it catches up on everything.
-#}

{% macro bdt_person_dimension_config() %}
    {{ return({
        'materialized': 'incremental',
        'unique_key': 'person_token',
        'incremental_strategy': bdt_upsert_strategy(),
        'on_schema_change': 'append_new_columns',
        'post_hook': '{{ bdt_delete_people_no_longer_seen() }}',
    }) }}
{% endmacro %}


{#- Incremental, and the table already has the fingerprint columns. Every person is computed on
    a first build, with --full-refresh, for a table from before those columns, and when the var
    `recompute_people` (env BDT_DBT_RECOMPUTE_PEOPLE, how `bdt build --force` passes it; read
    only when the model compiles, never while parsing) is true. -#}
{% macro bdt_person_dimension_is_incremental() %}
    {%- if not is_incremental() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set recompute = var('recompute_people', env_var('BDT_DBT_RECOMPUTE_PEOPLE', '')) -%}
    {%- if (recompute | string | trim | lower) in ['1', 'true', 'yes'] -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
    {{ return('_appearance_rows' in names and '_appearance_digest' in names) }}
{% endmacro %}


{#- Post-hook: drop the rows of people who appear nowhere any more (nothing on a first build). -#}
{% macro bdt_delete_people_no_longer_seen() %}
    {%- if is_incremental() -%}
        delete from {{ this }}
        where person_token not in (
            select person_token from {{ ref('int_people__unioned') }} where person_token is not null
        )
    {%- endif -%}
{% endmacro %}


{#- Replace rows by unique_key: DuckDB deletes the keys then inserts, in one transaction;
    BigQuery's MERGE updates matched keys and inserts the rest in one statement. -#}
{% macro bdt_upsert_strategy() %}
    {{ return(adapter.dispatch('bdt_upsert_strategy', 'bdt_platform')()) }}
{% endmacro %}
{% macro default__bdt_upsert_strategy() %}{{ return('delete+insert') }}{% endmacro %}
{% macro bigquery__bdt_upsert_strategy() %}{{ return('merge') }}{% endmacro %}


{#- A signed 64-bit fingerprint of a row's columns (NULLs included). -#}
{% macro bdt_row_fingerprint(columns) %}
    {{ return(adapter.dispatch('bdt_row_fingerprint', 'bdt_platform')(columns)) }}
{% endmacro %}
{% macro default__bdt_row_fingerprint(columns) -%}
    cast(hash({{ columns | join(', ') }}) >> 1 as {{ dbt.type_bigint() }})
{%- endmacro %}
{% macro bigquery__bdt_row_fingerprint(columns) -%}
    farm_fingerprint(to_json_string(struct({% for c in columns %}{{ c }} as {{ c }}{% if not loop.last %}, {% endif %}{% endfor %})))
{%- endmacro %}


{#- XOR of a column's values over the group (the digest of a set of fingerprints). -#}
{% macro bdt_fingerprint_xor(expr) %}
    {{ return(adapter.dispatch('bdt_fingerprint_xor', 'bdt_platform')(expr)) }}
{% endmacro %}
{% macro default__bdt_fingerprint_xor(expr) %}bit_xor({{ expr }}){% endmacro %}
