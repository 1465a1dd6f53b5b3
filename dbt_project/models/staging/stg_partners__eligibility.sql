-- Partner eligibility rows, typed and tidied. RESTRICTED: still holds names, address, phone,
-- email and date of birth (needed for the outbound mail list); nothing downstream of the
-- intermediate layer may select them.
-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(person_token as {{ dbt.type_string() }})                 as person_token,
    cast(record_id as {{ dbt.type_string() }})                    as record_id,
    {{ bdt_person_columns() }},
    cast(household_size as {{ dbt.type_bigint() }})               as household_size,
    cast(monthly_income as {{ bdt_type_double() }})               as monthly_income,
    upper(nullif(trim(programs_enrolled), ''))                    as programs_enrolled,
    upper(nullif(trim(programs_eligible), ''))                    as programs_eligible,
    {{ bdt_staging_partition_columns() }},
    _partner                                                      as _partner
from {{ source('raw', 'eligibility') }}
