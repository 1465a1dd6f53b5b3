-- Text/call campaign events. recipient_key is renamed person_token (it is one); event_date is the
-- UTC calendar date of event_ts.
-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(event_id as {{ dbt.type_string() }})                     as event_id,
    cast(campaign_id as {{ dbt.type_string() }})                  as campaign_id,
    lower(trim(arm))                                              as arm,
    lower(trim(channel))                                          as channel,
    cast(recipient_key as {{ dbt.type_string() }})                as person_token,
    lower(trim(event_type))                                       as event_type,
    event_ts                                                      as event_ts,
    {{ bdt_date_utc('event_ts') }}                                as event_date,
    {{ bdt_staging_partition_columns() }},
    _partner                                                      as _partner
from {{ source('raw', 'nudges') }}
