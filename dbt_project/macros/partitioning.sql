{#-
  State x month partitions for the incremental `fct_` models (tag `partitioned`).

  Vars (all optional, each independent; each falls back to an environment variable,
  BDT_DBT_MIN_MONTH / BDT_DBT_MAX_MONTH / BDT_DBT_STATES (comma-separated), which is how
  Dagster passes them: a changed --vars makes dbt re-parse the whole project, while env vars read
  only when nodes are compiled, never while parsing, leave the saved parse state valid):
    min_month  first month to build, inclusive: 'YYYY-MM-DD' (or 'YYYY-MM'); any day is read as
               the first of its month
    max_month  last month to build, inclusive, same format
    states     list of two-letter state codes (a comma-separated string is accepted too)
  A var that is absent, null or '' does not restrict; with no vars at all everything is built.
  `states: []` selects no partition at all.

  Scheme: every partitioned model selects `where {{ partition_filter() }}` and is materialized
  `incremental` with an append strategy; its pre-hook `bdt_delete_selected_partitions()` first
  deletes the selected partitions from the existing table, in the insert's transaction (on
  BigQuery, which has none between dbt's jobs, one MERGE inserts and deletes instead: see
  `bdt_merge_replaces_partitions`). So a run replaces exactly the selected partitions, or leaves
  them as they were when it fails: re-runs never duplicate, a partition that now yields zero rows is emptied, and
  partitions built one by one equal one full build.
-#}

{% macro bdt_partition_selection(strict=true) %}
    {#- Parsing only needs the SQL's shape: read no var or env var then, so dbt's saved parse
        state does not depend on the partitions and a command for other partitions re-parses
        nothing. Nodes are compiled (execute is true) with the command's own values.
        strict=false (the query comment, rendered where `exceptions` is undefined, before any
        node compiles): a malformed value selects nothing to label instead of raising; the
        first partitioned node then raises the error that names it. -#}
    {%- set unrestricted = {'min_month': none, 'max_month': none, 'states': none} -%}
    {%- if execute is defined and not execute -%}
        {{ return(unrestricted) }}
    {%- endif -%}
    {%- set re = modules.re -%}

    {%- set months = {} -%}
    {%- for name in ['min_month', 'max_month'] -%}
        {%- set raw = var(name, env_var('BDT_DBT_' ~ (name | upper), '')) -%}
        {%- if raw is none or (raw | string | trim) == '' -%}
            {%- do months.update({name: none}) -%}
        {%- else -%}
            {%- set text = raw | string | trim -%}
            {%- set m = re.match('^(\\d{4})-(\\d{2})(-\\d{2})?$', text) -%}
            {%- if not m or (m.group(2) | int) < 1 or (m.group(2) | int) > 12 -%}
                {%- if not strict -%}{{ return(unrestricted) }}{%- endif -%}
                {%- do exceptions.raise_compiler_error(
                    "var " ~ name ~ " must be an ISO month such as 2024-03-01 (or 2024-03), got " ~ (raw | string)) -%}
            {%- endif -%}
            {%- do months.update({name: m.group(1) ~ '-' ~ m.group(2) ~ '-01'}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if months.min_month is not none and months.max_month is not none
          and months.min_month > months.max_month -%}
        {%- if not strict -%}{{ return(unrestricted) }}{%- endif -%}
        {%- do exceptions.raise_compiler_error(
            "var min_month (" ~ months.min_month ~ ") is after max_month (" ~ months.max_month ~ ")") -%}
    {%- endif -%}

    {%- set raw_states = var('states', env_var('BDT_DBT_STATES', '')) -%}
    {%- set states = none -%}
    {%- if raw_states is string -%}
        {%- if raw_states | trim != '' -%}
            {%- set states = raw_states.split(',') -%}
        {%- endif -%}
    {%- elif raw_states is not none -%}
        {%- if raw_states is mapping or raw_states is not iterable -%}
            {%- if not strict -%}{{ return(unrestricted) }}{%- endif -%}
            {%- do exceptions.raise_compiler_error(
                "var states must be a list of state codes such as [\"NJ\", \"PA\"], got " ~ (raw_states | string)) -%}
        {%- endif -%}
        {%- set states = raw_states -%}
    {%- endif -%}
    {%- set clean_states = [] -%}
    {%- if states is not none -%}
        {%- for s in states -%}
            {%- set code = (s | string | trim | upper) -%}
            {%- if not re.match('^[A-Z]{2}$', code) -%}
                {%- if not strict -%}{{ return(unrestricted) }}{%- endif -%}
                {%- do exceptions.raise_compiler_error(
                    "var states must hold two-letter state codes, got " ~ (s | string)) -%}
            {%- endif -%}
            {%- if code not in clean_states -%}
                {%- do clean_states.append(code) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}

    {{ return({
        'min_month': months.min_month,
        'max_month': months.max_month,
        'states': (clean_states | sort) if states is not none else none,
    }) }}
{% endmacro %}


{#- A boolean SQL predicate selecting the partitions named by the vars; `true` without vars. -#}
{% macro partition_filter(state_column='state', month_column='month') %}
    {%- set sel = bdt_partition_selection() -%}
    {%- set preds = [] -%}
    {%- if sel.min_month is not none -%}
        {%- do preds.append(month_column ~ " >= cast('" ~ sel.min_month ~ "' as date)") -%}
    {%- endif -%}
    {%- if sel.max_month is not none -%}
        {%- do preds.append(month_column ~ " <= cast('" ~ sel.max_month ~ "' as date)") -%}
    {%- endif -%}
    {%- if sel.states is not none -%}
        {%- if sel.states | length == 0 -%}
            {%- do preds.append("1 = 0") -%}
        {%- else -%}
            {%- do preds.append(state_column ~ " in ('" ~ (sel.states | join("', '")) ~ "')") -%}
        {%- endif -%}
    {%- endif -%}
    {%- if preds | length == 0 -%}
        true
    {%- else -%}
        ({{ preds | join(' and ') }})
    {%- endif -%}
{% endmacro %}


{#-
  Pre-hook of every partitioned model. On an incremental run (the table exists, no
  --full-refresh) delete the selected partitions' rows, so the append that follows replaces them.
  Renders to nothing otherwise (the first build creates the table from the select).
  --full-refresh together with partition vars is refused: it would replace the whole table by
  the selected partitions and silently drop every other one.
-#}
{% macro bdt_delete_selected_partitions() %}
    {%- if should_full_refresh() and partition_filter() | trim != 'true' -%}
        {%- do exceptions.raise_compiler_error(
            "--full-refresh with partition vars (min_month/max_month/states) would drop every "
            ~ "other partition of " ~ this ~ "; full-refresh without vars, then build partitions") -%}
    {%- endif -%}
    {%- if is_incremental() and not bdt_merge_replaces_partitions() -%}
        delete from {{ this }} where {{ partition_filter() }}
    {%- endif -%}
{% endmacro %}


{#-
  Whether the incremental statement itself removes the selected partitions' old rows (so the
  pre-hook deletes nothing). On DuckDB the pre-hook's delete and the insert run in one
  transaction. On BigQuery dbt runs them as two jobs with no transaction between them: a build
  that failed after the delete (BigQuery unreachable, a quota) would leave the partitions empty
  until the next build. There the MERGE does both, atomically (`bigquery__get_merge_sql`).
-#}
{% macro bdt_merge_replaces_partitions() %}
    {{ return(adapter.dispatch('bdt_merge_replaces_partitions', 'bdt_platform')()) }}
{% endmacro %}
{% macro default__bdt_merge_replaces_partitions() %}{{ return(false) }}{% endmacro %}
{% macro bigquery__bdt_merge_replaces_partitions() %}{{ return(true) }}{% endmacro %}


{#-
  dbt's MERGE on BigQuery (dispatched from the `dbt` namespace: dbt_project.yml puts this project
  first in its search order). For a partitioned fact it is one statement that inserts the
  model's rows and deletes the old rows of the selected partitions (`when not matched by source`
  + the partition filter): BigQuery applies all of it or none. Any other merge is dbt's own.
-#}
{% macro bigquery__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates=none) -%}
    {%- if 'partitioned' not in (model.tags or []) or unique_key -%}
        {{ return(default__get_merge_sql(target, source, unique_key, dest_columns, incremental_predicates)) }}
    {%- endif -%}
    {%- set dest_cols_csv = get_quoted_csv(dest_columns | map(attribute="name")) -%}
    merge into {{ target }} as DBT_INTERNAL_DEST
        using {{ source }} as DBT_INTERNAL_SOURCE
        on FALSE
    when not matched then insert
        ({{ dest_cols_csv }})
    values
        ({{ dest_cols_csv }})
    when not matched by source
        and {{ partition_filter('DBT_INTERNAL_DEST.state', 'DBT_INTERNAL_DEST.month') }} then delete
{%- endmacro %}


{#-
  The incremental strategy that appends the model's rows after the pre-hook delete.
  dbt-bigquery has no 'append': its 'merge', which bdt's `bigquery__get_merge_sql` makes the
  atomic replace of the selected partitions.
-#}
{% macro bdt_append_strategy() %}
    {{ return(adapter.dispatch('bdt_append_strategy', 'bdt_platform')()) }}
{% endmacro %}
{% macro default__bdt_append_strategy() %}{{ return('append') }}{% endmacro %}
{% macro bigquery__bdt_append_strategy() %}{{ return('merge') }}{% endmacro %}


{#- The config of every partitioned `fct_` model: `{{ config(**bdt_partitioned_fact_config()) }}`. -#}
{% macro bdt_partitioned_fact_config() %}
    {{ return({
        'materialized': 'incremental',
        'incremental_strategy': bdt_append_strategy(),
        'on_schema_change': 'fail',
        'tags': ['partitioned'],
        'pre_hook': '{{ bdt_delete_selected_partitions() }}',
        'partition_by': bdt_partition_by(),
        'cluster_by': bdt_cluster_by(),
    }) }}
{% endmacro %}


{#- BigQuery table partitioning of partitioned models (ignored elsewhere). -#}
{% macro bdt_partition_by() %}
    {{ return(adapter.dispatch('bdt_partition_by', 'bdt_platform')()) }}
{% endmacro %}
{% macro default__bdt_partition_by() %}{{ return(none) }}{% endmacro %}
{% macro bigquery__bdt_partition_by() %}
    {{ return({'field': 'month', 'data_type': 'date', 'granularity': 'month'}) }}
{% endmacro %}

{#- BigQuery clustering of partitioned models (ignored elsewhere). -#}
{% macro bdt_cluster_by() %}
    {{ return(adapter.dispatch('bdt_cluster_by', 'bdt_platform')()) }}
{% endmacro %}
{% macro default__bdt_cluster_by() %}{{ return(none) }}{% endmacro %}
{% macro bigquery__bdt_cluster_by() %}{{ return(['state']) }}{% endmacro %}
