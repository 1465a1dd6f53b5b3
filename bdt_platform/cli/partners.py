"""``bdt partners list|add|check``: show, extend and validate the partner registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from bdt_platform.core.settings import Settings
from bdt_platform.cli.common import EXIT_OK, _echo, _refuse, _table


def _registry_in_force(settings: Settings) -> str:
    from bdt_platform.inbox.partners import DEFAULT_REGISTRY

    if settings.partners_path.resolve() == DEFAULT_REGISTRY.resolve():
        return (f"{settings.partners_path} (the registry shipped with the project; BDT_PARTNERS "
                "is unset)")
    return f"{settings.partners_path} (BDT_PARTNERS)"


def _missing_hint(path: Path) -> str:
    return ("" if path.exists() else
            "; bdt partners add creates it from the shipped default")


def cmd_partners_list(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import RegistryError, load_registry

    try:
        registry = load_registry(settings.partners_path)
    except RegistryError as exc:
        return _refuse("partners list", f"{exc}{_missing_hint(settings.partners_path)}")
    _echo(f"partner registry: {_registry_in_force(settings)}")
    rows = [(p.name, ",".join(p.feeds), p.states_text, p.description) for p in registry.partners]
    for line in _table(rows, ("name", "feeds", "states", "description")):
        _echo(line)
    _echo(f"{len(rows)} partner(s)")
    return EXIT_OK


def _partner_states(spec: str | None) -> list[str] | None:
    """``--states``: None (every state) when not given or ``all``; else the codes as typed,
    upper-cased (the registry checks them)."""
    if spec is None or spec.strip().lower() == "all":
        return None
    return [code.strip().upper() for code in spec.split(",") if code.strip()]


def cmd_partners_add(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import DEFAULT_REGISTRY, RegistryError, add_partner, \
        parse_registry

    path = settings.partners_path
    feeds = list(dict.fromkeys(f.strip() for spec in args.feed for f in spec.split(",")
                               if f.strip()))
    states = _partner_states(args.states)
    source = path if path.exists() else DEFAULT_REGISTRY
    try:
        current = parse_registry(source.read_text(encoding="utf-8"), str(source))
        existing = current.get(args.name)
        if existing is not None and args.states is None:
            # Extending a partner without --states keeps its states (a state agency given
            # another feed must not start sending it for every state); --states all widens.
            states = None if existing.states is None else sorted(existing.states)
        if (path.exists() and existing is not None and set(feeds) <= set(existing.feeds)
                and (existing.states is None
                     or (states is not None and set(states) <= existing.states))
                and args.description in (None, existing.description)):
            _echo(f"partner {existing.name} is already registered for "
                  f"{','.join(existing.feeds)} in {existing.states_text}; {path} unchanged")
            return EXIT_OK
        partner, is_new = add_partner(path, args.name, feeds, states, args.description)
    except RegistryError as exc:
        return _refuse("partners add", exc)
    except OSError as exc:
        return _refuse("partners add", f"cannot write the partner registry {path}: "
                                       f"{exc.strerror or exc}")
    _echo(f"{'added' if is_new else 'extended'} partner {partner.name}: feeds "
          f"{','.join(partner.feeds)}; states {partner.states_text}")
    created = " (created from the shipped default)" if source != path else ""
    _echo(f"wrote {_registry_in_force(settings)}{created}")
    if path.resolve() == DEFAULT_REGISTRY.resolve():
        _echo("  this is the project's own registry: review the change and commit it, or set "
              "BDT_PARTNERS to a registry file of your own")
    _echo(f"its files (inbox folder {partner.name}/) load from the next bdt ingest or sensor "
          "tick; files of it already quarantined: bdt quarantine list, then bdt quarantine "
          "release FILE")
    return EXIT_OK


def cmd_partners_check(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.inbox.partners import RegistryError, parse_registry

    path = Path(args.file) if args.file else settings.partners_path
    try:
        registry = parse_registry(path.read_text(encoding="utf-8"), str(path))
    except RegistryError as exc:
        return _refuse("partners check", exc)
    except FileNotFoundError:
        return _refuse("partners check", f"{path}: partner registry not found"
                                         f"{_missing_hint(path)}")
    except (OSError, UnicodeDecodeError) as exc:
        return _refuse("partners check", f"{path}: cannot read it: {exc}")
    _echo(f"ok: {len(registry.partners)} partners in {path}")
    return EXIT_OK


def add_parser(commands) -> None:
    partners = commands.add_parser(
        "partners", help="show, extend and validate the partner registry (who may send which "
        "feed for which states)",
        description="The partner registry in force: BDT_PARTNERS, or the registry shipped with "
        "the project when it is unset. A file from a partner, feed or state it does not list is "
        "quarantined. Exit 2 for an invalid name, feed, state or registry (the registry is then "
        "left as it was).")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True,
                                               metavar="SUBCOMMAND")
    partners_list = partner_commands.add_parser(
        "list", help="the registry in force and its partners",
        description="Print the registry file in force, then one line per partner: name, feeds, "
        "states (or all) and description.")
    partners_list.set_defaults(handler=cmd_partners_list)
    partners_add = partner_commands.add_parser(
        "add", help="register a partner, or extend one (writes the registry in force)",
        description="Register NAME for the feeds and states given, in the registry in force "
        "(BDT_PARTNERS, created from the shipped default when the file does not exist yet; "
        "unset: the project's own registry file). A partner already registered is extended: "
        "the feeds and states given are added to its own (without --states it keeps its "
        "states). The file is validated before it is "
        "replaced, so a refused change leaves it as it was.",
        epilog="example: bdt partners add njhealth --feed eligibility --feed outcomes "
        "--states NJ --description 'NJ Dept. of Health (contact: data@nj.example)'")
    partners_add.add_argument("name", metavar="NAME", help="lower-case letters and digits: its "
                              "inbox folder and the first part of its file names")
    partners_add.add_argument("--feed", action="append", required=True, metavar="FEED",
                              help="a feed it may send: eligibility, outcomes, mailreturns or "
                              "nudges (repeat, or comma-separate, for several)")
    partners_add.add_argument("--states", metavar="PA,NJ",
                              help="the states it may send for, or all (default: all states "
                              "for a new partner; a partner already registered keeps its own)")
    partners_add.add_argument("--description", metavar="TEXT",
                              help="who they are and who to call (kept when not given)")
    partners_add.set_defaults(handler=cmd_partners_add)
    partners_check = partner_commands.add_parser(
        "check", help="validate a registry file (default: the one in force)",
        description="Read FILE (default: the registry in force) and print 'ok: N partners', or "
        "the first rule it breaks with its file and line (exit 2).")
    partners_check.add_argument("file", nargs="?", metavar="FILE",
                                help="a registry file (default: BDT_PARTNERS or the shipped one)")
    partners_check.set_defaults(handler=cmd_partners_check)
