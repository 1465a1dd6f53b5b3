-- Case-management calls, one row per call_id (latest version by updated_at).
with latest as (
    {{ bdt_latest_versions(source('raw', 'calls'), 'call_id') }}
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
    {{ bdt_staging_partition_columns() }}
from latest
