"""``bdt users``, ``bdt serve``, ``bdt usage`` and ``bdt embed``: the report site's commands.

Parsers import nothing heavy (no FastAPI, no Dagster); each handler imports what it runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys

from bdt_platform.cli.common import EXIT_OK, _echo, _quiet_dagster, _refuse, _table
from bdt_platform.core.settings import Settings


def cmd_users_add(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.site.store import SiteStore
    from bdt_platform.site.users import UserError, add_user

    password = sys.stdin.readline().rstrip("\r\n")
    states = [s for s in (args.states or "").split(",") if s.strip()] or None
    try:
        user = add_user(SiteStore(settings.site_dir), args.name, args.role, password, states)
    except UserError as exc:
        return _refuse("users add", exc)
    scope = f" for {', '.join(user.states)}" if user.states else " (every state)"
    _echo(f"user {user.username}: {user.role}{scope}")
    return EXIT_OK


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.site.store import SiteStore
    from bdt_platform.site.users import list_users

    users = list_users(SiteStore(settings.site_dir))
    if not users:
        _echo("no users yet: bdt users add NAME --role admin|analyst|partner")
        return EXIT_OK
    rows = [(u.username, u.role, ",".join(u.states) if u.states else "all") for u in users]
    for line in _table(rows, ("user", "role", "states")):
        _echo(line)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    _quiet_dagster()  # the explain page loads the definitions: no Beta warnings on the console
    from bdt_platform.site.server import serve

    return serve(settings, args.host, args.port, echo=_echo)


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.site import usage
    from bdt_platform.site.store import SiteStore

    since = None
    if args.since:
        try:
            since = dt.date.fromisoformat(args.since)
        except ValueError:
            return _refuse("usage", f"--since: not a date: {args.since!r} (YYYY-MM-DD)")
    rows = usage.rows(SiteStore(settings.site_dir), since)
    if args.format == "json":
        _echo(json.dumps(rows, indent=1))
    elif args.format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=usage.COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        if not rows:
            _echo("no usage recorded" + (f" since {since}" if since else ""))
            return EXIT_OK
        table = [tuple("" if r[c] is None else str(r[c]) for c in usage.COLUMNS) for r in rows]
        for line in _table(table, usage.COLUMNS):
            _echo(line)
    return EXIT_OK


def cmd_embed(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.core.settings import site_secret
    from bdt_platform.site.embed import EmbedError, make_token

    try:
        token = make_token(site_secret(settings), args.page, args.states.split(","),
                           args.hours * 3600, args.by, args.frame_ancestors)
    except EmbedError as exc:
        return _refuse("embed", exc)
    base = args.base_url.rstrip("/")
    _echo(f"{base}/embed/{token}")
    _echo(f"(valid {args.hours:g} h; shows {args.page} for {args.states})")
    return EXIT_OK


def add_parsers(commands) -> None:
    """Register ``users``, ``serve``, ``usage`` and ``embed`` on the ``bdt`` parser."""
    users = commands.add_parser("users", help="report-site users (bdt serve)",
                                description="Report-site users and their roles: admin "
                                "(everything, usage, embed links), analyst (every state), "
                                "partner (only --states).")
    verbs = users.add_subparsers(dest="verb", required=True, metavar="VERB")
    add = verbs.add_parser("add", help="add a user, or reset one's role, states and password; "
                           "the password is read from stdin (exit 2: bad role, state or "
                           "empty password)",
                           description="Add a report-site user (or replace an existing one's "
                           "role, states and password). The password is the first line of "
                           "stdin, e.g. `printf '%%s\\n' \"$PW\" | bdt users add ann --role "
                           "analyst`.")
    add.add_argument("name", help="user name (letters, digits, . _ @ -)")
    add.add_argument("--role", required=True, help="admin, analyst or partner")
    add.add_argument("--states", help="partner only (required for them): the states they may "
                     "see, e.g. PA,NJ")
    add.set_defaults(handler=cmd_users_add)
    listing = verbs.add_parser("list", help="every user with role and states")
    listing.set_defaults(handler=cmd_users_list)

    serve = commands.add_parser(
        "serve", help="the report site on this $BDT_HOME (runs until stopped)",
        description="Serve the report site (scorecard, state, metric, drill-down, explain, "
        "explore pages and their JSON API) for this $BDT_HOME with uvicorn, until Ctrl-C. "
        "Sign in as a user made with `bdt users add` (or the one `bdt demo` printed). It reads "
        "the warehouse snapshot each `bdt build` publishes, so it never blocks a build. See "
        "docs/report-site.md.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                       "127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(handler=cmd_serve)

    use = commands.add_parser("usage", help="the report site's recorded page views, API calls "
                              "and downloads",
                              description="Every page view, API call and download the report "
                              "site served: ts, username, path, metric, states, rows, ms (and "
                              "kind, status).")
    use.add_argument("--since", help="only from this UTC date on (YYYY-MM-DD)")
    use.add_argument("--format", choices=("table", "csv", "json"), default="table")
    use.set_defaults(handler=cmd_usage)

    embed = commands.add_parser("embed", help="a signed, expiring link to one report-site page "
                                "for given states, viewable without sign-in",
                                description="Print an /embed/<token> link (the same as the "
                                "site's admin page makes). Anyone with the link sees that page, "
                                "for those states only, until it expires.")
    embed.add_argument("page", help="/, /states/ST or /metrics/NAME")
    embed.add_argument("--states", required=True, help="the states it shows, e.g. PA,NJ")
    embed.add_argument("--hours", type=float, default=24.0, help="lifetime (default 24)")
    embed.add_argument("--frame-ancestors", nargs="*", default=["*"], dest="frame_ancestors",
                       help="origins allowed to frame it, e.g. https://partner.example.org "
                       "(default *: any)")
    embed.add_argument("--base-url", default="http://127.0.0.1:8080", dest="base_url",
                       help="the site's address as viewers reach it")
    embed.add_argument("--by", default="bdt-embed", help=argparse.SUPPRESS)
    embed.set_defaults(handler=cmd_embed)
