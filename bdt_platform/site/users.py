"""Report-site users: a name, a role, the states a partner may see, an argon2 password hash.

Roles:

- ``admin``: everything, including the usage page and embedded links;
- ``analyst``: every page, every state;
- ``partner``: every page, but only their own states (``states``, required).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bdt_platform.core import partitions as parts
from bdt_platform.site.store import SiteStore

ROLES = ("admin", "analyst", "partner")
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
DEMO_USERNAME = "demo"

_hasher = PasswordHasher()
_dummy_hash: str | None = None


class UserError(ValueError):
    """A bad user name, role, state list or password: the message says which."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    #: The states this user may see; None means every state (admin, analyst).
    states: tuple[str, ...] | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_see(self, state: str) -> bool:
        return self.states is None or state in self.states


def _check(username: str, role: str, states: list[str] | None, password: str
           ) -> tuple[str, tuple[str, ...] | None]:
    if not USERNAME.match(username or ""):
        raise UserError(f"bad user name {username!r}: 1-64 letters, digits, '.', '_', '@' or '-', "
                        "starting with a letter or digit")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not password:
        raise UserError("empty password: give the password on stdin")
    if states:
        unknown = [s for s in states if s.upper() not in parts.STATES]
        if unknown:
            raise UserError(f"unknown state code(s): {', '.join(unknown)}")
        states = sorted({s.upper() for s in states}, key=parts.STATES.index)
    if role == "partner":
        if not states:
            raise UserError("a partner user needs --states (the states they may see)")
        return role, tuple(states)
    if states:
        raise UserError(f"--states is for partner users; a {role} sees every state")
    return role, None


def add_user(store: SiteStore, username: str, role: str, password: str,
             states: list[str] | None = None) -> User:
    """Create the user, or replace the role, states and password of an existing one."""
    role, scope = _check(username, role, states, password)
    password_hash = _hasher.hash(password)
    with store.transaction() as con:
        con.execute(
            "INSERT INTO users (username, role, states, password_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET role = excluded.role, "
            "states = excluded.states, password_hash = excluded.password_hash",
            (username, role, ",".join(scope or ()), password_hash, time.time()))
    return User(username, role, scope)


def _user(row) -> User:
    states = tuple(s for s in row["states"].split(",") if s)
    return User(row["username"], row["role"], states if row["role"] == "partner" else None)


def get_user(store: SiteStore, username: str) -> User | None:
    rows = store.read("SELECT username, role, states FROM users WHERE username = ?", (username,))
    return _user(rows[0]) if rows else None


def list_users(store: SiteStore) -> list[User]:
    return [_user(r) for r in store.read("SELECT username, role, states FROM users "
                                         "ORDER BY username")]


def authenticate(store: SiteStore, username: str, password: str) -> User | None:
    """The user when the password is theirs, else None. An unknown user costs the same argon2
    verification as a known one (against a dummy hash), so timing does not tell them apart."""
    global _dummy_hash
    rows = store.read("SELECT username, role, states, password_hash FROM users "
                      "WHERE username = ?", (username,))
    if not rows:
        if _dummy_hash is None:
            _dummy_hash = _hasher.hash(secrets.token_hex(16))
        try:
            _hasher.verify(_dummy_hash, password or "-")
        except (VerificationError, InvalidHashError):
            pass
        return None
    try:
        _hasher.verify(rows[0]["password_hash"], password or "")
    except (VerificationError, InvalidHashError):
        return None
    return _user(rows[0])


def create_demo_user(settings) -> tuple[str, str]:
    """The demo admin (``demo``) with a fresh random password; ``(username, password)``."""
    password = secrets.token_urlsafe(12)
    add_user(SiteStore(settings.site_dir), DEMO_USERNAME, "admin", password)
    return DEMO_USERNAME, password
