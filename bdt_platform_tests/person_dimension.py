"""The incremental ``marts.dim_person`` against a full rebuild, on any warehouse.

Used by test_end_to_end.py (DuckDB) and test_prod_parity.py (the BigQuery emulator) on a built
warehouse. The raw tables are changed in place the ways real data changes a person's rows, then
dbt builds ``dim_person`` incrementally, then with ``--full-refresh``: both must hold the same
rows. On the way, the model's own incremental select (its compiled SQL, run as dbt runs it)
must compute exactly the people whose rows changed, and nobody once they are built.

- a person seen in one eligibility row only loses it (a resent file without them): gone;
- a person seen in two months loses the first month's rows: ``first_seen_month`` and
  ``months_seen`` change;
- a person's zip is corrected: ``zip3`` changes;
- a new person arrives (a new row under a new token): a new row;
- with ``clients``, a client record moves to another person (a caseworker merges duplicates):
  both people change (``client_id``, ``is_client``, ``client_records``); then, built, the
  person's other client record is updated later, which changes only which one is their
  ``client_id`` (read from the clients' ``updated_at``, not from any appearance row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

NEW_PERSON = "tok_" + "e" * 32
COMPILED = Path("compiled") / "bdt_platform" / "models" / "marts" / "dim_person.sql"


@dataclass
class Warehouse:
    """How the check reaches one warehouse: ``sql`` runs a statement and returns its rows,
    ``table`` names a table in the backend's quoting (``raw.eligibility`` ->
    ``project.raw.eligibility`` on BigQuery), ``columns`` lists a table's columns in order,
    ``dbt`` runs a dbt command of the project on it and returns the target folder written."""
    sql: Callable[[str], list[tuple]]
    table: Callable[[str], str]
    columns: Callable[[str], list[str]]
    dbt: Callable[[Sequence[str]], Path]


def check_incremental_equals_full(warehouse: Warehouse, clients: bool = True) -> None:
    # The model's incremental select as dbt compiles it against the built table. Its text does
    # not depend on the rows (only on the table being there with its columns), so it is
    # compiled once and run after each change; it is compiled again at the end, and must be
    # the same text.
    select = _compiled(warehouse)

    def computed() -> set[str]:
        """The people the incremental select computes now."""
        return {str(row[0]) for row in warehouse.sql(
            f"select person_token from ({select}) as computed")}

    before = _rows(warehouse)
    assert computed() == set(), "a built dim_person would compute people again"
    changed, gone, taker = change_people(warehouse, clients)
    assert gone in before and NEW_PERSON not in before
    assert computed() == changed  # exactly the changed people, the gone one excluded
    warehouse.dbt(["run", "--select", "dim_person"])
    incremental = _rows(warehouse)
    assert computed() == set(), "built, the changed people are computed again"
    assert gone not in incremental and NEW_PERSON in incremental
    assert {p for p in before if before[p] != incremental.get(p)} == changed - {NEW_PERSON} | {
        gone}, "other people's rows changed"
    if clients:
        # Only the order of the taker's two client records changes (their first one is
        # updated later than the one moved to them): nothing in int_people__unioned does.
        raw_clients = warehouse.table("raw.clients")
        first = _one(warehouse, f"""select client_id from {raw_clients}
            where person_token = '{taker}' order by updated_at, client_id""")
        warehouse.sql(f"update {raw_clients} set updated_at = timestamp '2031-01-01 00:00:00+00' "
                      f"where client_id = '{first}'")
        assert computed() == {taker}
        warehouse.dbt(["run", "--select", "dim_person"])
        incremental = _rows(warehouse)
    assert _compiled(warehouse) == select

    warehouse.dbt(["run", "--select", "dim_person", "--full-refresh"])
    assert incremental == _rows(warehouse)


def _rows(warehouse: Warehouse) -> dict[str, tuple]:
    rows = warehouse.sql(f"select * from {warehouse.table('marts.dim_person')}")
    return {str(row[0]): tuple(map(str, row)) for row in rows}


def _compiled(warehouse: Warehouse) -> str:
    """The model's select as dbt compiles it against the table as it is now."""
    target = warehouse.dbt(["compile", "--select", "dim_person"])
    return (target / COMPILED).read_text()


def _one(warehouse: Warehouse, query: str) -> str:
    rows = warehouse.sql(query)
    assert rows, f"no person for this case: {query}"
    return str(rows[0][0])


def change_people(warehouse: Warehouse, clients: bool) -> tuple[set[str], str, str | None]:
    """Change the raw tables as the module says; returns (the people whose rows changed and
    who still appear, the person who appears nowhere any more, the person a client record
    moved to)."""
    eligibility, raw_clients = warehouse.table("raw.eligibility"), warehouse.table("raw.clients")
    gone = _one(warehouse, f"""
        select person_token from {eligibility} group by person_token having count(*) = 1
        and person_token not in (select person_token from {raw_clients})
        order by person_token""")
    fewer_months = _one(warehouse, f"""
        select person_token from {eligibility} group by person_token
        having count(distinct month) = 2 and min(person_token) != '{gone}'
        order by person_token""")
    corrected = _one(warehouse, f"""
        select person_token from {eligibility}
        where person_token not in ('{gone}', '{fewer_months}')
        group by person_token order by person_token""")
    first_month = warehouse.sql(f"""select min(month) from {eligibility}
                                    where person_token = '{fewer_months}'""")[0][0]
    warehouse.sql(f"delete from {eligibility} where person_token = '{gone}'")
    warehouse.sql(f"delete from {eligibility} where person_token = '{fewer_months}' "
                  f"and month = date '{first_month:%Y-%m-%d}'")
    warehouse.sql(f"update {eligibility} set zip = '99999' where person_token = '{corrected}'")
    columns = warehouse.columns("raw.eligibility")
    copied = [{"person_token": f"'{NEW_PERSON}'", "record_id": "concat(record_id, 'N')"}.get(
        column, column) for column in columns]
    warehouse.sql(f"insert into {eligibility} ({', '.join(columns)}) "
                  f"select {', '.join(copied)} from {eligibility} "
                  f"where person_token = '{corrected}'")
    changed, taker = {fewer_months, corrected, NEW_PERSON}, None
    if clients:
        [(client, owner)] = warehouse.sql(f"""
            select client_id, person_token from {raw_clients}
            where person_token in (select person_token from {eligibility})
            order by client_id limit 1""")  # the owner still appears once it is gone
        taker = _one(warehouse, f"""select person_token from {raw_clients}
            where person_token != '{owner}' order by client_id""")
        warehouse.sql(f"update {raw_clients} set person_token = '{taker}' "
                      f"where client_id = '{client}'")
        changed |= {str(owner), taker}
    return changed, gone, taker
