"""Embedded reporting: a signed, expiring link to one page, scoped to given states.

An admin makes one (the site's ``/admin/embed`` page or ``bdt embed``); anyone with the link
sees that page, for those states only, without signing in, inside a frame on another site
(``frame-ancestors`` names the origins allowed to frame it; ``*`` by default). The token is
``{"p": page, "s": states, "a": frame ancestors, "t": lifetime seconds, "by": admin}`` signed
and timestamped with the site secret (itsdangerous): a changed byte or a token older than its
lifetime is refused with 403.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from bdt_platform.core import partitions as parts

#: The pages an embedded link may show.
EMBEDDABLE = re.compile(r"^/$|^/states/[A-Z]{2}$|^/metrics/[a-z0-9_]+$")
MAX_LIFETIME_S = 366 * 24 * 3600
ORIGIN = re.compile(r"^(\*|'self'|https?://[A-Za-z0-9.-]+(:\d+)?)$")


class EmbedError(ValueError):
    """A bad request for a link, or a token that is tampered with or expired (403)."""


@dataclass(frozen=True)
class Embed:
    page: str
    states: tuple[str, ...]
    frame_ancestors: tuple[str, ...]
    expires_at: float
    created_by: str


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt="bdt.site.embed")


def make_token(secret: str, page: str, states: list[str], lifetime_s: float, created_by: str,
               frame_ancestors: list[str] | None = None) -> str:
    """A signed token for ``/embed/<token>``; raises :class:`EmbedError` with the reason."""
    page = page.strip() or "/"
    if not EMBEDDABLE.match(page):
        raise EmbedError(f"page {page!r} cannot be embedded: use /, /states/ST or /metrics/NAME")
    if not states:
        raise EmbedError("an embedded link needs the states it shows")
    try:
        scope = parts.parse_states(",".join(states))
    except ValueError as exc:
        raise EmbedError(str(exc)) from None
    if page.startswith("/states/") and page[-2:] not in scope:
        raise EmbedError(f"page {page} shows {page[-2:]}, which is not among the link's states")
    if not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise EmbedError(f"lifetime must be more than 0 and at most {MAX_LIFETIME_S // 86400} days")
    ancestors = [a.strip() for a in (frame_ancestors or ["*"]) if a.strip()] or ["*"]
    bad = [a for a in ancestors if not ORIGIN.match(a)]
    if bad:
        raise EmbedError(f"bad frame ancestor(s) {', '.join(bad)}: use https://host[:port] or *")
    return _serializer(secret).dumps({"p": page, "s": scope, "a": ancestors,
                                      "t": int(lifetime_s), "by": created_by})


def read_token(secret: str, token: str) -> Embed:
    """The link behind ``token``; :class:`EmbedError` when tampered with or expired."""
    try:
        data, signed_at = _serializer(secret).loads(token, max_age=MAX_LIFETIME_S,
                                                    return_timestamp=True)
    except SignatureExpired:
        raise EmbedError("this embedded link has expired") from None
    except BadSignature:
        raise EmbedError("this embedded link is not valid (tampered with or not from this site)"
                         ) from None
    expires_at = signed_at.timestamp() + float(data["t"])
    if time.time() > expires_at:
        raise EmbedError("this embedded link has expired")
    return Embed(data["p"], tuple(data["s"]), tuple(data["a"]), expires_at, data["by"])
