-- Every outcome row, with the case-management application and client it refers to when there is
-- one. Unmatched outcomes are kept (matched_application = false, client_id/person_token NULL).
select
    o.application_id,
    a.client_id,
    clients.person_token,
    (a.application_id is not null)                                as matched_application,
    o.program,
    a.program                                                     as application_program,
    o.decision,
    o.decision_date,
    o.monthly_benefit_usd,
    o.state,
    o.month,
    o._source_file
from {{ ref('stg_partners__outcomes') }} as o
left join {{ ref('stg_casemgmt__applications') }} as a
    on a.application_id = o.application_id
{{ bdt_left_join_clients('a.client_id') }}
