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
-- One row per benefit application submitted with the organization's help, with the client's
-- person token. Partitioned by the state and month of submission.

select
    applications.application_id,
    applications.client_id,
    clients.person_token,
    applications.program,
    applications.channel,
    applications.submitted_at,
    applications.state,
    applications.month,
    applications._source_file
from {{ ref('stg_casemgmt__applications') }} as applications
left join {{ ref('stg_casemgmt__clients') }} as clients
    on clients.client_id = applications.client_id
where {{ partition_filter('applications.state', 'applications.month') }}
