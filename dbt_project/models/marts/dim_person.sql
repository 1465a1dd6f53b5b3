{{ config(**bdt_person_dimension_config()) }}
-- One row per person (person_token) over every appearance in partner eligibility files and
-- case-management client records. "Latest" attributes come from the most recent month; within a
-- month a case-management record wins over a partner row (it comes from the person), then the
-- lowest state code and the latest file, so the choice is deterministic. No names, addresses,
-- phones, emails or dates of birth.
--
-- Incremental (macros/person_dimension.sql): a person's row depends only on their own rows in
-- int_people__unioned and stg_casemgmt__clients, so a build recomputes only the people whose rows
-- changed since the last one: `_appearance_rows` and `_appearance_digest` (a count and an
-- order-free fingerprint of those rows, one cheap aggregate over the history) are kept with each
-- row, and a person whose pair differs from the table's, or who is not in it yet, is computed
-- again from all of their history; a person no longer seen anywhere is deleted (post-hook). A
-- first build, `--full-refresh`, or a table from before these columns computes everyone.
with fingerprints as (
    select
        person_token,
        count(*)                                                  as appearance_rows,
        {{ bdt_fingerprint_xor('row_fingerprint') }}              as appearance_digest
    from (
        select
            person_token,
            {{ bdt_row_fingerprint(['source', 'source_record_id', 'client_id', 'state', 'month',
                                    'zip3', 'language', 'household_size', 'programs_eligible',
                                    'programs_enrolled', '_source_file']) }} as row_fingerprint
        from {{ ref('int_people__unioned') }}
        union all
        -- latest_client below orders a person's client records by updated_at
        select
            person_token,
            {{ bdt_row_fingerprint(['client_id', 'updated_at']) }}   as row_fingerprint
        from {{ ref('stg_casemgmt__clients') }}
    ) as person_rows
    group by person_token
),

people as (
    -- The people this build computes: everyone, or (incremental) the new and the changed.
    select f.person_token, f.appearance_rows, f.appearance_digest
    from fingerprints as f
    {%- if bdt_person_dimension_is_incremental() %}
    left join {{ this }} as kept
        on kept.person_token = f.person_token
    where kept.person_token is null
        or kept._appearance_rows != f.appearance_rows
        or kept._appearance_digest != f.appearance_digest
    {%- endif %}
),

appearances as (
    select
        u.*,
        case when u.source = 'casemgmt' then 0 else 1 end        as source_rank
    from {{ ref('int_people__unioned') }} as u
    inner join people as p
        on p.person_token = u.person_token
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
        where person_token in (select person_token from people)
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
    h.client_records,
    p.appearance_rows                                             as _appearance_rows,
    p.appearance_digest                                           as _appearance_digest
from history as h
inner join people as p
    on p.person_token = h.person_token
inner join latest as l
    on l.person_token = h.person_token
left join latest_eligibility as e
    on e.person_token = h.person_token
left join latest_client as c
    on c.person_token = h.person_token
