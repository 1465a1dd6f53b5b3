{#- Fails on every non-NULL DATE that is not the first day of its month. -#}
{% test is_first_of_month(model, column_name) %}
select {{ column_name }} as bad_value
from {{ model }}
where {{ column_name }} is not null
  and {{ column_name }} <> cast({{ dbt.date_trunc('month', column_name) }} as date)
{% endtest %}
