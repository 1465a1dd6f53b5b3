{{ config(**bdt_partitioned_fact_config()) }}
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
{{ bdt_left_join_clients('calls.client_id') }}
where {{ partition_filter('calls.state', 'calls.month') }}
