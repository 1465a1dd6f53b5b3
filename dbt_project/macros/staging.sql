{#-
  Column blocks and the deduplication that several staging models share. Each renders SQL with
  the same lower-case aliases the models had written out (BigQuery keeps a bare column's stored
  case, so every output column is aliased explicitly).
-#}

{#- The latest version of each `key` in a case-management extract (by updated_at, then file, month, state). -#}
{% macro bdt_latest_versions(relation, key) -%}
    select *
    from (
        select
            *,
            row_number() over (
                partition by {{ key }}
                order by updated_at desc, _source_file desc, month desc, state
            ) as version_rank
        from {{ relation }}
    ) as versions
    where version_rank = 1
{%- endmacro %}

{#- The partition columns every staging model passes on: state (upper case), month (DATE), _source_file. -#}
{% macro bdt_staging_partition_columns() -%}
    upper(state)                                                  as state,
    cast(month as date)                                           as month,
    _source_file                                                  as _source_file
{%- endmacro %}

{#- A person's name, date of birth, address and contacts, blank -> NULL (PII: eligibility and clients). -#}
{% macro bdt_person_columns() -%}
    nullif(trim(first_name), '')                                  as first_name,
    nullif(trim(last_name), '')                                   as last_name,
    cast(date_of_birth as date)                                   as date_of_birth,
    nullif(trim(address_line1), '')                               as address_line1,
    nullif(trim(address_line2), '')                               as address_line2,
    nullif(trim(city), '')                                        as city,
    nullif(trim(zip), '')                                         as zip,
    nullif(trim(phone), '')                                       as phone,
    nullif(trim(email), '')                                       as email,
    lower(nullif(trim(language), ''))                             as language
{%- endmacro %}
