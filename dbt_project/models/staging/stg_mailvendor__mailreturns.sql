-- Mail pieces and their delivery status, one row per piece in the current vendor file.
-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(mail_piece_id as {{ dbt.type_string() }})                as mail_piece_id,
    cast(mailed_date as date)                                     as mailed_date,
    lower(trim(status))                                           as status,
    cast(status_date as date)                                     as status_date,
    {{ bdt_staging_partition_columns() }},
    _partner                                                      as _partner
from {{ source('raw', 'mailreturns') }}
