{#- Fails when any of `columns` has a NULL: one row per such column, with how many rows have
    it NULL. One test (one query, one scan of the model) for all of a model's required
    columns, instead of dbt's `not_null` once per column: each dbt test is a node of its own
    (~20 ms of dbt's own work, and a full read of the model: of a staging view, the whole raw
    history), so a model with ten required columns cost ten scans on every build. A column
    whose NULLs are allowed in some rows keeps dbt's `not_null` with its `where`. -#}
{% test not_null_columns(model, columns) %}
select column_name, null_rows
from (
    select
        names.column_name,
        case names.column_name
        {%- for column in columns %}
            when '{{ column }}' then counts.n_{{ loop.index }}
        {%- endfor %}
        end as null_rows
    from (
        select
        {%- for column in columns %}
            count(*) - count({{ column }}) as n_{{ loop.index }}{{ "," if not loop.last }}
        {%- endfor %}
        from {{ model }}
    ) as counts
    cross join (
        {%- for column in columns %}
        select '{{ column }}' as column_name{{ " union all" if not loop.last }}
        {%- endfor %}
    ) as names
) as by_column
where null_rows > 0
{% endtest %}
