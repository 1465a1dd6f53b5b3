-- Partner eligibility rows, typed and tidied. RESTRICTED: still holds names, address, phone,
-- email and date of birth (needed for the outbound mail list); nothing downstream of the
-- intermediate layer may select them.
-- Every output column is aliased explicitly so names stay lower-case whatever case the
-- loader gave the raw columns (BigQuery keeps a bare column's stored case).
select
    cast(person_token as {{ dbt.type_string() }})                 as person_token,
    cast(record_id as {{ dbt.type_string() }})                    as record_id,
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
    cast(household_size as {{ dbt.type_bigint() }})               as household_size,
    cast(monthly_income as {{ dbt.type_float() }})                as monthly_income,
    upper(nullif(trim(programs_enrolled), ''))                    as programs_enrolled,
    upper(nullif(trim(programs_eligible), ''))                    as programs_eligible,
    upper(state)                                                  as state,
    cast(month as date)                                           as month,
    _source_file                                                  as _source_file,
    _partner                                                      as _partner
from {{ source('raw', 'eligibility') }}
