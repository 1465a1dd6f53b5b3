"""The report site's own database: ``$BDT_HOME/site/site.sqlite`` (stdlib sqlite3, WAL mode).

It holds users, sign-in failures (for throttling) and usage rows. Never the warehouse: numbers
come from the metric layer. One :class:`SiteStore` per process; every call opens a short
transaction on a connection of the calling thread's own, so the web server's worker threads
never share a connection, and ``bdt users add`` or ``bdt usage`` may run while the site serves.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    states TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    ts REAL NOT NULL,
    username TEXT NOT NULL,
    address TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_ts ON login_failures (ts);
CREATE TABLE IF NOT EXISTS page_views (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    username TEXT,
    path TEXT NOT NULL,
    metric TEXT,
    states TEXT,
    rows INTEGER,
    ms REAL NOT NULL,
    kind TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS page_views_ts ON page_views (ts);
"""


class SiteStore:
    """``site.sqlite`` under ``site_dir``, created (with its tables) on first use."""

    def __init__(self, site_dir: Path):
        self.path = Path(site_dir) / "site.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(SCHEMA)  # (executescript commits by itself)

    def _connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            # FULL: a usage row reported written survives a power cut, not only a crash.
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    def read(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        return self._connection().execute(sql, params).fetchall()
