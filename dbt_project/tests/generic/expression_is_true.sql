{#-
  Fails on every row where `expression` is false (rows where it is NULL pass, as in dbt_utils).
  Optional `where` (a dbt test config) narrows the rows checked. Written here because the
  package hub is unreachable; same meaning as dbt_utils.expression_is_true.
-#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
