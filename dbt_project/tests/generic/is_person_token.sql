{#- Fails on every non-NULL value that is not a person token: `tok_` + 32 lower-case hex digits. -#}
{% test is_person_token(model, column_name) %}
select {{ column_name }} as bad_value
from {{ model }}
where {{ column_name }} is not null
  and not {{ bdt_regexp_matches(column_name, '^tok_[0-9a-f]{32}$') }}
{% endtest %}
