{#- The 50 states plus DC (USPS codes), as in bdt_platform/partitions.py. -#}
{% macro bdt_state_codes() %}
    {{ return([
        'AK', 'AL', 'AR', 'AZ', 'CA', 'CO', 'CT', 'DC', 'DE', 'FL', 'GA', 'HI', 'IA', 'ID', 'IL',
        'IN', 'KS', 'KY', 'LA', 'MA', 'MD', 'ME', 'MI', 'MN', 'MO', 'MS', 'MT', 'NC', 'ND', 'NE',
        'NH', 'NJ', 'NM', 'NV', 'NY', 'OH', 'OK', 'OR', 'PA', 'RI', 'SC', 'SD', 'TN', 'TX', 'UT',
        'VA', 'VT', 'WA', 'WI', 'WV', 'WY',
    ]) }}
{% endmacro %}

{#- Program codes of the data contract (docs/feeds.md). -#}
{% macro bdt_program_codes() %}
    {{ return(['SNAP', 'MEDICAID', 'LIHEAP', 'WIC', 'MSP', 'EXTRA_HELP']) }}
{% endmacro %}
