-- State decisions on applications, one row per row of the current outcomes file per partition.
-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(application_id as {{ dbt.type_string() }})               as application_id,
    upper(trim(program))                                          as program,
    lower(trim(decision))                                         as decision,
    cast(decision_date as date)                                   as decision_date,
    cast(monthly_benefit_usd as {{ bdt_type_double() }})          as monthly_benefit_usd,
    {{ bdt_staging_partition_columns() }},
    _partner                                                      as _partner
from {{ source('raw', 'outcomes') }}
