"""The organization's own case-management database (SQLite), filled from the simulated funnel.

* ``clients`` - people who called our call center: their person fields exactly as on their
  eligibility row (so the person token computed from either matches), ``created_at`` = their first
  call on record, ``updated_at`` = their latest call or application;
* ``calls`` - every call (first calls and callbacks) with its duration and outcome;
* ``applications`` - every application we helped submit, one per program.

Ids are deterministic (``CALL-PA-202403-000001``, ``APP-PA-202403-000001``, and a client id fixed
per pool person), and writing a state-month first deletes that state-month's calls and
applications, so re-generating a scope leaves the database exactly as a single generation would,
with no duplicates. Clients are shared by months: a client who calls again in a later month keeps
one row, whose ``created_at``/``updated_at`` are recomputed from the calls and applications on
record, and clients left without any call are removed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from bdt_platform.core.partitions import add_months
from bdt_platform.synthetic.formats import timestamps
from bdt_platform.synthetic.funnel import MonthActivity
from bdt_platform.synthetic.people import PersonPool

TABLES = ("clients", "applications", "calls")

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    first_name TEXT, last_name TEXT, ssn TEXT, date_of_birth TEXT,
    address_line1 TEXT, address_line2 TEXT, city TEXT, state TEXT, zip TEXT,
    phone TEXT, email TEXT, language TEXT,
    created_at TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS applications (
    application_id TEXT PRIMARY KEY,
    client_id TEXT, program TEXT, state TEXT,
    channel TEXT,      -- phone | web | mail
    submitted_at TEXT, updated_at TEXT
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    client_id TEXT, state TEXT, started_at TEXT,
    duration_s INTEGER,
    outcome TEXT,      -- completed | voicemail | no_answer | callback_requested
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS calls_client ON calls (client_id);
CREATE INDEX IF NOT EXISTS calls_state_started ON calls (state, started_at);
CREATE INDEX IF NOT EXISTS applications_client ON applications (client_id);
CREATE INDEX IF NOT EXISTS applications_state_submitted ON applications (state, submitted_at);
CREATE INDEX IF NOT EXISTS clients_state ON clients (state);
"""

_PERSON_FIELDS = ("first_name", "last_name", "ssn", "date_of_birth", "address_line1",
                  "address_line2", "city", "state", "zip", "phone", "email", "language")


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating folders, file and tables as needed) the case-management database."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.executescript(SCHEMA)
    return connection


def write_month(connection: sqlite3.Connection, pool: PersonPool,
                month: MonthActivity) -> dict[str, int]:
    """Replace the state-month's calls and applications and upsert its callers as clients.

    Returns the rows written per table. Run ``finalize`` after the last month of a state.
    """
    state = month.state
    start, end = f"{month.month:%Y-%m}", f"{add_months(month.month, 1):%Y-%m}"
    connection.execute("DELETE FROM calls WHERE state = ? AND started_at >= ? AND started_at < ?",
                       (state, start, end))
    connection.execute("DELETE FROM applications WHERE state = ? AND submitted_at >= ?"
                       " AND submitted_at < ?", (state, start, end))

    calls = month.calls
    started = timestamps(calls["started"])
    ended = timestamps(calls["started"] + calls["duration"])
    connection.executemany(
        "INSERT OR REPLACE INTO calls (call_id, client_id, state, started_at, duration_s, outcome,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(calls["call_id"].tolist(), pool.client_id[calls["person"]].tolist(),
            [state] * len(started), started, calls["duration"].tolist(),
            calls["outcome"].tolist(), ended))

    apps = month.applications
    submitted = timestamps(apps["submitted"])
    connection.executemany(
        "INSERT OR REPLACE INTO applications (application_id, client_id, program, state, channel,"
        " submitted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        zip(apps["application_id"].tolist(), pool.client_id[apps["person"]].tolist(),
            apps["program"].tolist(), [state] * len(submitted), apps["channel"].tolist(),
            submitted, submitted))

    # Person fields now; created_at/updated_at are recomputed by finalize().
    people = sorted(set(calls["person"].tolist()))
    first_call = {}
    for person, at in zip(calls["person"].tolist(), started):
        first_call.setdefault(person, at)
    connection.executemany(
        f"INSERT INTO clients (client_id, {', '.join(_PERSON_FIELDS)}, created_at, updated_at)"
        f" VALUES ({', '.join('?' * (len(_PERSON_FIELDS) + 3))})"
        " ON CONFLICT (client_id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _PERSON_FIELDS),
        ([pool.client_id[p], *(_person_value(pool, name, p) for name in _PERSON_FIELDS),
          first_call[p], first_call[p]] for p in people))
    return {"clients": len(people), "applications": len(submitted), "calls": len(started)}


def _person_value(pool: PersonPool, name: str, person: int) -> str:
    return pool.state if name == "state" else getattr(pool, name)[person]


def finalize(connection: sqlite3.Connection, states: Iterable[str]) -> None:
    """Drop the states' clients without calls; recompute their created_at/updated_at; commit."""
    for state in states:
        connection.execute(
            "DELETE FROM clients WHERE state = ? AND client_id NOT IN"
            " (SELECT client_id FROM calls WHERE state = ?)", (state, state))
        connection.execute(
            """
            UPDATE clients SET
                created_at = (SELECT MIN(started_at) FROM calls
                              WHERE calls.client_id = clients.client_id),
                updated_at = MAX(
                    (SELECT MAX(updated_at) FROM calls WHERE calls.client_id = clients.client_id),
                    COALESCE((SELECT MAX(updated_at) FROM applications
                              WHERE applications.client_id = clients.client_id), ''))
            WHERE state = ?
            """, (state,))
    connection.commit()
