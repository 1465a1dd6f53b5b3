"""Who is asking: session cookies, CSRF tokens, sign-in throttling and the proxy identity header.

**Sessions.** Signing in sets ``bdt_session``: ``{"u": username, "c": csrf}`` signed with the
site secret (itsdangerous, timestamped, valid ``SESSION_HOURS``), HttpOnly, SameSite=Lax (and
Secure when the site is served over https). The user is looked up on every request, so a changed
role or removed user takes effect at once.

**CSRF.** Every form carries the session's token in a hidden ``csrf`` field; a POST without the
right one is refused with 403. The sign-in form has no session yet: the sign-in page sets a
signed ``bdt_login`` cookie and puts the same token in the form. A ``POST /login`` that carries
no cookie at all (a script: ``curl -d username=..&password=..``) is accepted without a token,
but only without an ``Origin`` header or with this site's own: browsers always send ``Origin``
on a cross-site form POST, and SameSite=Lax keeps cookies off it, so a forged cross-site sign-in
is refused by the Origin check.

**Throttling.** After ``MAX_FAILURES_PER_USER`` wrong passwords for one user name, or
``MAX_FAILURES_PER_ADDRESS`` from one address, within ``WINDOW_S``, sign-in answers 429 (even
with the right password) until the window has passed.

**Identity header.** With ``BDT_SITE_IDENTITY_HEADER`` set (production behind a proxy that
authenticates), the header's value is the user name; the user must exist (``bdt users add``)
for their role and states. The site's own sign-in is then not used.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bdt_platform.site.store import SiteStore
from bdt_platform.site.users import User, get_user

SESSION_COOKIE = "bdt_session"
LOGIN_COOKIE = "bdt_login"
SESSION_HOURS = 12
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_ADDRESS = 20
WINDOW_S = 300.0
WRONG_PASSWORD = "wrong user name or password"


class NotSignedIn(Exception):
    """No valid session: pages redirect to sign-in, ``/api`` answers 401."""


class Forbidden(Exception):
    """Signed in, but not allowed: 403 with the reason."""


class Sessions:
    """Signs and reads session and sign-in cookies with the site secret."""

    def __init__(self, secret: str):
        self._session = URLSafeTimedSerializer(secret, salt="bdt.site.session")
        self._login = URLSafeTimedSerializer(secret, salt="bdt.site.login")

    def new_session(self, username: str) -> tuple[str, str]:
        """(cookie value, csrf token) of a fresh session."""
        csrf = secrets.token_urlsafe(24)
        return self._session.dumps({"u": username, "c": csrf}), csrf

    def read_session(self, value: str | None) -> tuple[str, str] | None:
        """(username, csrf) of a valid, unexpired cookie, else None."""
        if not value:
            return None
        try:
            data = self._session.loads(value, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        return data["u"], str(data.get("c", ""))

    def new_login_token(self) -> tuple[str, str]:
        """(cookie value, form token) for the sign-in form."""
        token = secrets.token_urlsafe(24)
        return self._login.dumps(token), token

    def read_login_token(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            token = self._login.loads(value, max_age=3600)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def origin_allowed(request: Request) -> bool:
    """No ``Origin`` header (a script), or this site's own scheme://host[:port]."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and origin.split("://", 1)[-1] == host


@dataclass
class Throttle:
    """Sign-in failures in ``site.sqlite``, so every worker and restart sees the same count."""

    store: SiteStore
    per_user: int = MAX_FAILURES_PER_USER
    per_address: int = MAX_FAILURES_PER_ADDRESS
    window_s: float = WINDOW_S

    def blocked(self, username: str, address: str) -> bool:
        since = time.time() - self.window_s
        [row] = self.store.read(
            "SELECT sum(username = ?) AS by_user, sum(address = ?) AS by_address "
            "FROM login_failures WHERE ts >= ?", (username, address, since))
        return ((row["by_user"] or 0) >= self.per_user
                or (row["by_address"] or 0) >= self.per_address)

    def failed(self, username: str, address: str) -> None:
        now = time.time()
        with self.store.transaction() as con:
            con.execute("DELETE FROM login_failures WHERE ts < ?", (now - self.window_s,))
            con.execute("INSERT INTO login_failures (ts, username, address) VALUES (?, ?, ?)",
                        (now, username, address))

    def succeeded(self, username: str) -> None:
        with self.store.transaction() as con:
            con.execute("DELETE FROM login_failures WHERE username = ?", (username,))


def current_user(request: Request) -> User:
    """The signed-in user of this request (identity header or session cookie), else raises
    :class:`NotSignedIn`. Also sets ``request.state.csrf`` (the session's form token)."""
    app = request.app.state.site
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    header = app.settings.site_identity_header
    if header:
        name = (request.headers.get(header) or "").strip()
        if not name:
            raise NotSignedIn(f"no {header} header from the proxy")
        user = get_user(app.store, name)
        if user is None:
            raise Forbidden(f"user {name!r} (from {header}) is not a report-site user: "
                            "add them with bdt users add")
        request.state.csrf = _header_csrf(app, name)
    else:
        session = app.sessions.read_session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise NotSignedIn("not signed in")
        user = get_user(app.store, session[0])
        if user is None:
            raise NotSignedIn("that user no longer exists")
        request.state.csrf = session[1]
    request.state.user = user
    return user


def _header_csrf(app, username: str) -> str:
    """Behind the proxy there is no session: the CSRF token is a keyed hash of the user name."""
    return hmac.new(app.secret.encode(), f"csrf:{username}".encode(), "sha256").hexdigest()


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("this page is for admin users")


async def check_csrf(request: Request) -> dict:
    """The POSTed form, after checking its ``csrf`` field against the session's token
    (403 :class:`Forbidden` when missing or wrong)."""
    form = dict(await request.form())
    current_user(request)
    if not same_token(form.get("csrf"), getattr(request.state, "csrf", None)):
        raise Forbidden("missing or invalid CSRF token: reload the page and submit again")
    return form
