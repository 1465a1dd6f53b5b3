{{
    config(
        materialized='incremental',
        incremental_strategy=bdt_append_strategy(),
        on_schema_change='fail',
        tags=['partitioned'],
        pre_hook="{{ bdt_delete_selected_partitions() }}",
        partition_by=bdt_partition_by(),
        cluster_by=bdt_cluster_by(),
    )
}}
-- One row per case-management call, with the client's person token. Partitioned by the state
-- and month the call started.

select
    calls.call_id,
    calls.client_id,
    clients.person_token,
    calls.started_at,
    calls.duration_s,
    calls.outcome,
    calls.state,
    calls.month,
    calls._source_file
from {{ ref('stg_casemgmt__calls') }} as calls
left join {{ ref('stg_casemgmt__clients') }} as clients
    on clients.client_id = calls.client_id
where {{ partition_filter('calls.state', 'calls.month') }}
