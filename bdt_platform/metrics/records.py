"""The records behind a metric's value: the rows its measure aggregates, no more, no less.

The SQL is derived from the measure's own definition in the semantic manifest (its
aggregation, expression and table), so a drill-down's count equals the number it came from:
``sum`` -> the rows where the expression is not 0 (amount = the expression), ``count`` -> the
rows where it is not null, ``count_distinct`` -> one record per distinct value, ``median`` and
friends -> the rows they take (amount = the value). The columns never include an SSN, a name,
an address, a phone or an e-mail: only a record id, the person token, the program, a date and
the file the row came from.
"""

from __future__ import annotations

from bdt_platform.metrics.catalog import MeasureSource

RECORD_COLUMNS = ["record_id", "person_token", "program", "occurred_on", "source_file", "amount"]


#: Type names per dialect (DuckDB knows STRING but not FLOAT64; BigQuery the reverse of DOUBLE).
_TYPES = {"duckdb": {"string": "varchar", "float": "double"},
          "bigquery": {"string": "string", "float": "float64"}}


def records_sql(source: MeasureSource, where: str, dialect: str = "duckdb") -> str:
    """``state, month`` + :data:`RECORD_COLUMNS` for ``source``'s rows matching ``where``
    (a condition on ``state`` and ``month`` with bind parameters)."""
    string, double = _TYPES[dialect]["string"], _TYPES[dialect]["float"]
    program = source.program or f"cast(null as {string})"
    expr = f"({source.expr})"
    if source.agg == "count_distinct":
        return (f"select state, month, cast({expr} as {string}) as record_id, "
                f"min(person_token) as person_token, min({program}) as program, "
                f"min(cast({source.record_date} as date)) as occurred_on, "
                f"min(_source_file) as source_file, 1.0 as amount "
                f"from {source.table} where {where} and {expr} is not null "
                f"group by state, month, {expr}")
    if source.agg == "sum":
        amount, pick = expr, f"coalesce({expr}, 0) <> 0"
    elif source.agg == "count":
        amount, pick = "1", f"{expr} is not null"
    else:  # median, average, min, max, percentile: the values they aggregate
        amount, pick = expr, f"{expr} is not null"
    return (f"select state, month, cast({source.record_id} as {string}) as record_id, "
            f"person_token, {program} as program, "
            f"cast({source.record_date} as date) as occurred_on, "
            f"_source_file as source_file, cast({amount} as {double}) as amount "
            f"from {source.table} where {where} and {pick}")
