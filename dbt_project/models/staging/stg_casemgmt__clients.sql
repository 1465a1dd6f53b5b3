-- Case-management clients, one row per client_id (the latest version by updated_at, should an
-- extract ever carry a client twice). RESTRICTED: still holds names, address, phone, email and
-- date of birth.
with latest as (
    {{ bdt_latest_versions(source('raw', 'clients'), 'client_id') }}
)

-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(client_id as {{ dbt.type_string() }})                   as client_id,
    cast(person_token as {{ dbt.type_string() }})                 as person_token,
    {{ bdt_person_columns() }},
    created_at                                                    as created_at,
    updated_at                                                    as updated_at,
    {{ bdt_staging_partition_columns() }}
from latest
