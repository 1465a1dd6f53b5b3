{{ config(**bdt_partitioned_fact_config()) }}
-- One row per row of the partner outcomes files: the state's decision on an application, matched
-- to case management when possible (unmatched rows are kept). Partitioned by the outcomes file's
-- state x month.

select
    application_id,
    client_id,
    person_token,
    matched_application,
    program,
    decision,
    decision_date,
    monthly_benefit_usd,
    (decision = 'approved')                                       as is_approved,
    state,
    month,
    _source_file
from {{ ref('int_outcomes__matched_to_applications') }}
where {{ partition_filter() }}
