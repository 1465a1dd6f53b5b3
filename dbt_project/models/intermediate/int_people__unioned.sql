-- One row per appearance of a person: each partner eligibility row, and each case-management
-- client record. No names, addresses, phones, emails or dates of birth: only zip3.
with eligibility as (
    select
        person_token,
        'eligibility'                                             as source,
        record_id                                                 as source_record_id,
        cast(null as {{ dbt.type_string() }})                     as client_id,
        state,
        month,
        substr(zip, 1, 3)                                         as zip3,
        language,
        household_size,
        programs_eligible,
        programs_enrolled,
        _source_file
    from {{ ref('stg_partners__eligibility') }}
),

clients as (
    select
        person_token,
        'casemgmt'                                                as source,
        client_id                                                 as source_record_id,
        client_id,
        state,
        month,
        substr(zip, 1, 3)                                         as zip3,
        language,
        cast(null as {{ dbt.type_bigint() }})                     as household_size,
        cast(null as {{ dbt.type_string() }})                     as programs_eligible,
        cast(null as {{ dbt.type_string() }})                     as programs_enrolled,
        _source_file
    from {{ ref('stg_casemgmt__clients') }}
)

select * from eligibility
union all
select * from clients
