{#- Left-joins the case-management clients as `clients` on a client_id, for the client's person_token. -#}
{% macro bdt_left_join_clients(client_id) -%}
left join {{ ref('stg_casemgmt__clients') }} as clients
    on clients.client_id = {{ client_id }}
{%- endmacro %}
