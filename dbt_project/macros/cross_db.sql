{#-
  Dialect differences between DuckDB (local) and BigQuery (prod), behind adapter.dispatch.
  `default__` is what DuckDB (and most ANSI engines) use; `bigquery__` is the BigQuery form.
-#}

{#- Calendar date (in UTC) of a TIMESTAMP WITH TIME ZONE. -#}
{% macro bdt_date_utc(ts) %}{{ return(adapter.dispatch('bdt_date_utc', 'bdt_platform')(ts)) }}{% endmacro %}
{% macro default__bdt_date_utc(ts) %}cast({{ ts }} as date){% endmacro %}
{% macro duckdb__bdt_date_utc(ts) %}cast(timezone('UTC', {{ ts }}) as date){% endmacro %}
{% macro bigquery__bdt_date_utc(ts) %}date({{ ts }}, 'UTC'){% endmacro %}

{#- First day of the month (DATE) of a TIMESTAMP WITH TIME ZONE, in UTC. -#}
{% macro bdt_month_utc(ts) %}{{ return(adapter.dispatch('bdt_month_utc', 'bdt_platform')(ts)) }}{% endmacro %}
{% macro default__bdt_month_utc(ts) %}cast(date_trunc('month', {{ ts }}) as date){% endmacro %}
{% macro duckdb__bdt_month_utc(ts) %}cast(date_trunc('month', timezone('UTC', {{ ts }})) as date){% endmacro %}
{% macro bigquery__bdt_month_utc(ts) %}date_trunc(date({{ ts }}, 'UTC'), month){% endmacro %}

{#- A DATE plus n months, as a DATE. -#}
{% macro bdt_add_months(d, n) %}{{ return(adapter.dispatch('bdt_add_months', 'bdt_platform')(d, n)) }}{% endmacro %}
{% macro default__bdt_add_months(d, n) %}cast({{ d }} + interval '{{ n }} month' as date){% endmacro %}
{% macro bigquery__bdt_add_months(d, n) %}date_add({{ d }}, interval {{ n }} month){% endmacro %}

{#- True when any value of a boolean expression in the group is true. -#}
{% macro bdt_bool_or(expr) %}{{ return(adapter.dispatch('bdt_bool_or', 'bdt_platform')(expr)) }}{% endmacro %}
{% macro default__bdt_bool_or(expr) %}bool_or({{ expr }}){% endmacro %}
{% macro bigquery__bdt_bool_or(expr) %}logical_or({{ expr }}){% endmacro %}

{#- Regular-expression match (RE2 syntax on both engines); true when the pattern matches. -#}
{% macro bdt_regexp_matches(expr, pattern) %}{{ return(adapter.dispatch('bdt_regexp_matches', 'bdt_platform')(expr, pattern)) }}{% endmacro %}
{% macro default__bdt_regexp_matches(expr, pattern) %}regexp_matches({{ expr }}, '{{ pattern }}'){% endmacro %}
{% macro bigquery__bdt_regexp_matches(expr, pattern) %}regexp_contains({{ expr }}, r'{{ pattern }}'){% endmacro %}

{#- Number of `;`-separated items in a code list ('SNAP;WIC' -> 2; NULL or '' -> 0). -#}
{% macro bdt_count_codes(expr) %}{{ return(adapter.dispatch('bdt_count_codes', 'bdt_platform')(expr)) }}{% endmacro %}
{% macro default__bdt_count_codes(expr) %}coalesce(len(string_split(nullif({{ expr }}, ''), ';')), 0){% endmacro %}
{% macro bigquery__bdt_count_codes(expr) %}coalesce(array_length(split(nullif({{ expr }}, ''), ';')), 0){% endmacro %}

{#- One row per day from start (inclusive) to end (exclusive), column date_day (DATE). -#}
{% macro bdt_day_spine(start, end) %}{{ return(adapter.dispatch('bdt_day_spine', 'bdt_platform')(start, end)) }}{% endmacro %}
{% macro default__bdt_day_spine(start, end) %}select cast(range as date) as date_day from range(date '{{ start }}', date '{{ end }}', interval 1 day){% endmacro %}
{% macro bigquery__bdt_day_spine(start, end) %}select date_day from unnest(generate_date_array(date '{{ start }}', date_sub(date '{{ end }}', interval 1 day))) as date_day{% endmacro %}

{#- A 64-bit float (dbt.type_float() is DuckDB's 32-bit FLOAT). -#}
{% macro bdt_type_double() %}{{ return(adapter.dispatch('bdt_type_double', 'bdt_platform')()) }}{% endmacro %}
{% macro default__bdt_type_double() %}double{% endmacro %}
{% macro bigquery__bdt_type_double() %}float64{% endmacro %}
