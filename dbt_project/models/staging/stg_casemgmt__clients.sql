-- Case-management clients, one row per client_id (the latest version by updated_at, should an
-- extract ever carry a client twice). RESTRICTED: still holds names, address, phone, email and
-- date of birth.
with ranked as (
    select
        *,
        row_number() over (
            partition by client_id
            order by updated_at desc, _source_file desc, month desc, state
        ) as version_rank
    from {{ source('raw', 'clients') }}
)

-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(client_id as {{ dbt.type_string() }})                   as client_id,
    cast(person_token as {{ dbt.type_string() }})                 as person_token,
    nullif(trim(first_name), '')                                  as first_name,
    nullif(trim(last_name), '')                                   as last_name,
    cast(date_of_birth as date)                                   as date_of_birth,
    nullif(trim(address_line1), '')                               as address_line1,
    nullif(trim(address_line2), '')                               as address_line2,
    nullif(trim(city), '')                                        as city,
    nullif(trim(zip), '')                                         as zip,
    nullif(trim(phone), '')                                       as phone,
    nullif(trim(email), '')                                       as email,
    lower(nullif(trim(language), ''))                             as language,
    created_at                                                    as created_at,
    updated_at                                                    as updated_at,
    upper(state)                                                  as state,
    cast(month as date)                                           as month,
    _source_file                                                  as _source_file
from ranked
where version_rank = 1
