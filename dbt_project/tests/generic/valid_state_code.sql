{#- Fails on every non-NULL value that is not one of the 50 state codes or DC. -#}
{% test valid_state_code(model, column_name) %}
select {{ column_name }} as bad_value, count(*) as n_rows
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} not in ('{{ bdt_state_codes() | join("', '") }}')
group by {{ column_name }}
{% endtest %}
