-- One row per person (person_token) over every appearance in partner eligibility files and
-- case-management client records. "Latest" attributes come from the most recent month; within a
-- month a case-management record wins over a partner row (it comes from the person), then the
-- lowest state code and the latest file, so the choice is deterministic. No names, addresses,
-- phones, emails or dates of birth.
with appearances as (
    select
        *,
        case when source = 'casemgmt' then 0 else 1 end          as source_rank
    from {{ ref('int_people__unioned') }}
),

ordered as (
    -- "Latest" value of each attribute, per person, over the recency order above; eligibility-only
    -- attributes (household, programs) use the latest eligibility row.
    select
        person_token,
        row_number() over recency                                 as recency_rank,
        first_value(state) over recency_all                       as home_state,
        first_value(zip3 ignore nulls) over recency_all           as zip3,
        first_value(language ignore nulls) over recency_all       as language
    from appearances
    window
        recency as (
            partition by person_token
            order by month desc, source_rank, state, _source_file desc, source_record_id desc
        ),
        recency_all as (
            partition by person_token
            order by month desc, source_rank, state, _source_file desc, source_record_id desc
            rows between unbounded preceding and unbounded following
        )
),

latest as (
    select person_token, home_state, zip3, language
    from ordered
    where recency_rank = 1
),

latest_eligibility as (
    select
        person_token,
        household_size,
        programs_eligible,
        programs_enrolled
    from (
        select
            person_token,
            household_size,
            programs_eligible,
            programs_enrolled,
            row_number() over (
                partition by person_token
                order by month desc, state, _source_file desc, source_record_id desc
            ) as rn
        from appearances
        where source = 'eligibility'
    ) as e
    where rn = 1
),

latest_client as (
    -- A person may have more than one client record: keep the most recently updated one.
    select person_token, client_id
    from (
        select
            person_token,
            client_id,
            row_number() over (
                partition by person_token
                order by updated_at desc, client_id desc
            ) as rn
        from {{ ref('stg_casemgmt__clients') }}
    ) as c
    where rn = 1
),

history as (
    select
        person_token,
        min(month)                                                as first_seen_month,
        max(month)                                                as last_seen_month,
        count(distinct month)                                     as months_seen,
        {{ bdt_bool_or("source = 'casemgmt'") }}                  as is_client,
        count(distinct client_id)                                 as client_records
    from appearances
    group by person_token
)

select
    h.person_token,
    l.home_state,
    l.zip3,
    l.language,
    e.household_size,
    e.programs_eligible,
    e.programs_enrolled,
    {{ bdt_count_codes('e.programs_eligible') }}                  as programs_eligible_count,
    {{ bdt_count_codes('e.programs_enrolled') }}                  as programs_enrolled_count,
    h.first_seen_month,
    h.last_seen_month,
    h.months_seen,
    h.is_client,
    c.client_id,
    h.client_records
from history as h
inner join latest as l
    on l.person_token = h.person_token
left join latest_eligibility as e
    on e.person_token = h.person_token
left join latest_client as c
    on c.person_token = h.person_token
