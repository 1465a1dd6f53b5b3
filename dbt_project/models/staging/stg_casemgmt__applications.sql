-- Case-management applications, one row per application_id (latest version by updated_at).
with ranked as (
    select
        *,
        row_number() over (
            partition by application_id
            order by updated_at desc, _source_file desc, month desc, state
        ) as version_rank
    from {{ source('raw', 'applications') }}
)

-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(application_id as {{ dbt.type_string() }})               as application_id,
    cast(client_id as {{ dbt.type_string() }})                    as client_id,
    upper(trim(program))                                          as program,
    lower(trim(channel))                                          as channel,
    submitted_at                                                  as submitted_at,
    updated_at                                                    as updated_at,
    upper(state)                                                  as state,
    cast(month as date)                                           as month,
    _source_file                                                  as _source_file
from ranked
where version_rank = 1
