-- Case-management applications, one row per application_id (latest version by updated_at).
with latest as (
    {{ bdt_latest_versions(source('raw', 'applications'), 'application_id') }}
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
    {{ bdt_staging_partition_columns() }}
from latest
