-- Case-management calls, one row per call_id (latest version by updated_at).
with ranked as (
    select
        *,
        row_number() over (
            partition by call_id
            order by updated_at desc, _source_file desc, month desc, state
        ) as version_rank
    from {{ source('raw', 'calls') }}
)

-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(call_id as {{ dbt.type_string() }})                      as call_id,
    cast(client_id as {{ dbt.type_string() }})                    as client_id,
    started_at                                                    as started_at,
    cast(duration_s as {{ dbt.type_bigint() }})                   as duration_s,
    lower(trim(outcome))                                          as outcome,
    updated_at                                                    as updated_at,
    upper(state)                                                  as state,
    cast(month as date)                                           as month,
    _source_file                                                  as _source_file
from ranked
where version_rank = 1
