-- The people on partner eligibility lists, one row per person per partner file, WITHOUT the
-- PII the staging view still holds: what the metric `people_eligible` counts (distinct tokens
-- across partners). A view: always the current staging rows.
select
    {{ dbt.concat(['_source_file', "':'", 'record_id']) }}        as eligibility_row_id,
    person_token,
    state,
    month,
    _partner,
    _source_file
from {{ ref('stg_partners__eligibility') }}
