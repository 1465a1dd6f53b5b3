-- Outreach touches as the metric layer reads them: every row of fct_outreach, plus what a
-- metric needs per row. `cost_usd` is the configured cost of one mail piece
-- (BDT_MAIL_PIECE_COST_USD, passed to dbt by the platform; 0.65 when unset; a build after a
-- change applies it), 0 for nudges. `is_returned`: the piece came back (returned or
-- undeliverable).
-- Tagged `partitioned`: it reads a partitioned fact, so Dagster (re)creates it with the
-- fact's partitions, in the same dbt command, never before the fact exists.
{{ config(tags=['partitioned']) }}
select
    outreach_id,
    outreach_type,
    channel,
    person_token,
    campaign_id,
    arm,
    status,
    occurred_on,
    case when outreach_type = 'mail'
         then cast({{ env_var('BDT_MAIL_PIECE_COST_USD', '0.65') }} as {{ bdt_type_double() }})
         else cast(0 as {{ bdt_type_double() }}) end              as cost_usd,
    (outreach_type = 'mail' and status in ('returned', 'undeliverable')) as is_returned,
    state,
    month,
    _source_file
from {{ ref('fct_outreach') }}
