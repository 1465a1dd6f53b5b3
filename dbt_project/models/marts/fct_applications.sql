{{ config(**bdt_partitioned_fact_config()) }}
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
{{ bdt_left_join_clients('applications.client_id') }}
where {{ partition_filter('applications.state', 'applications.month') }}
