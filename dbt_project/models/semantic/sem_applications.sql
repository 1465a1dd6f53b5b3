-- Applications as the metric layer reads them: every row of fct_applications, plus the days
-- from the state's first mailing of that month to the submission (`days_from_mailing`; NULL
-- when the state mailed nothing that month or the application came before the first piece).
-- Mail return files name pieces, not people, so the mailing is the partition's, not the
-- person's own letter.
-- Tagged `partitioned`: it reads a partitioned fact, so Dagster (re)creates it with the
-- fact's partitions, in the same dbt command, never before the fact exists.
{{ config(tags=['partitioned']) }}
with first_mailing as (
    select state, month, min(occurred_on) as first_mailed_on
    from {{ ref('fct_outreach') }}
    where outreach_type = 'mail'
    group by state, month
)

select
    applications.application_id,
    applications.person_token,
    applications.program,
    applications.channel,
    applications.submitted_at,
    cast(applications.submitted_at as date)                       as submitted_on,
    case when cast(applications.submitted_at as date) >= first_mailing.first_mailed_on
         then {{ dbt.datediff('first_mailing.first_mailed_on',
                              'cast(applications.submitted_at as date)', 'day') }}
    end                                                           as days_from_mailing,
    applications.state,
    applications.month,
    applications._source_file
from {{ ref('fct_applications') }} as applications
left join first_mailing
    on first_mailing.state = applications.state
   and first_mailing.month = applications.month
