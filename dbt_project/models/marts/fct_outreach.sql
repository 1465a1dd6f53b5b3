{{ config(**bdt_partitioned_fact_config()) }}
-- One row per outreach touch: every mail piece in the mail vendor's files and every nudge event
-- in the nudge vendor's files. Partitioned by the vendor file's state x month.

with mail as (
    select
        'mail:' || mail_piece_id                                  as outreach_id,
        'mail'                                                    as outreach_type,
        'mail'                                                    as channel,
        cast(null as {{ dbt.type_string() }})                     as person_token,
        cast(null as {{ dbt.type_string() }})                     as campaign_id,
        cast(null as {{ dbt.type_string() }})                     as arm,
        status,
        mailed_date                                               as occurred_on,
        state,
        month,
        _source_file
    from {{ ref('stg_mailvendor__mailreturns') }}
),

nudge as (
    select
        'nudge:' || event_id                                      as outreach_id,
        'nudge'                                                   as outreach_type,
        channel,
        person_token,
        campaign_id,
        arm,
        event_type                                                as status,
        event_date                                                as occurred_on,
        state,
        month,
        _source_file
    from {{ ref('stg_nudgevendor__nudges') }}
),

outreach as (
    select * from mail
    union all
    select * from nudge
)

select * from outreach
where {{ partition_filter() }}
