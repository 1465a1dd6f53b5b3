"""The partner registry from the operator's side: ``bdt partners list|add|check`` (in-process,
``cli.main``) and ``parse_registry``'s refusals, each naming the file and line.

A refused change (bad name, unknown feed, bad state, broken registry) exits 2 with one line on
stderr saying why, and leaves the registry file byte for byte as it was (or not created).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bdt_platform import cli
from bdt_platform.inbox import partners as registry_module
from bdt_platform.inbox.partners import (DEFAULT_REGISTRY, RegistryError, load_registry,
                                         parse_registry)

from .conftest import cli_environment

DEFAULT_COUNT = len(parse_registry(DEFAULT_REGISTRY.read_text(), "default").partners)


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    """A home of its own and BDT_PARTNERS naming ``tmp/partners.yaml`` (not created yet)."""
    path = tmp_path / "partners.yaml"
    cli_environment(monkeypatch, tmp_path / "home", path)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def add(capsys, *argv: str) -> tuple[int, str, str]:
    return run(capsys, "partners", "add", *argv)


# -- list, check --------------------------------------------------------------------------------

def test_list_shows_the_registry_in_force_first_then_a_table(registry, capsys, monkeypatch):
    registry.write_text(DEFAULT_REGISTRY.read_text())
    code, out, err = run(capsys, "partners", "list")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"partner registry: {registry} (BDT_PARTNERS)"
    assert lines[1].split() == ["name", "feeds", "states", "description"]
    rows = {line.split()[0]: line.split(None, 3) for line in lines[2:-1]}
    assert len(rows) == DEFAULT_COUNT and lines[-1] == f"{DEFAULT_COUNT} partner(s)"
    assert rows["paagency"][1:3] == ["eligibility,outcomes", "PA"]
    assert rows["communitycare"][1:3] == ["eligibility", "all"]
    assert rows["mailvendor"][3].startswith("Print-and-mail vendor")

    monkeypatch.delenv("BDT_PARTNERS")  # the shipped registry
    code, out, _ = run(capsys, "partners", "list")
    assert code == 0
    assert out.splitlines()[0] == (f"partner registry: {DEFAULT_REGISTRY.resolve()} (the "
                                   "registry shipped with the project; BDT_PARTNERS is unset)")


def test_check_the_registry_in_force_or_a_file(registry, capsys, tmp_path):
    code, out, err = run(capsys, "partners", "check", str(DEFAULT_REGISTRY))
    assert (code, err) == (0, "")
    assert out.strip() == f"ok: {DEFAULT_COUNT} partners in {DEFAULT_REGISTRY}"

    code, _, err = run(capsys, "partners", "check")  # BDT_PARTNERS names no file yet
    assert code == 2
    assert err.strip() == (f"bdt partners check: {registry}: partner registry not found; "
                           "bdt partners add creates it from the shipped default")

    registry.write_text("partners:\n- name: acme\n  feeds: [eligibility]\n  states: [PA, NJ]\n")
    code, out, _ = run(capsys, "partners", "check")
    assert code == 0 and out.strip() == f"ok: 1 partners in {registry}"


@pytest.mark.parametrize("subcommand", [["partners"], ["partners", "list"], ["partners", "add"],
                                        ["partners", "check"], ["quarantine"],
                                        ["quarantine", "list"], ["quarantine", "release"]])
def test_every_subcommand_has_help(subcommand, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([*subcommand, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bdt " + " ".join(subcommand))
    assert len(out.splitlines()) > 5


# -- add ------------------------------------------------------------------------------------------

def test_add_creates_the_registry_from_the_default_when_it_is_missing(registry, capsys):
    code, out, err = add(capsys, "newpartner", "--feed", "eligibility", "--states", "PA,nj",
                         "--description", "New Partner Org (contact: data@new.example)")
    assert (code, err) == (0, "")
    assert out.splitlines()[:2] == [
        "added partner newpartner: feeds eligibility; states NJ,PA",
        f"wrote {registry} (BDT_PARTNERS) (created from the shipped default)"]
    written = load_registry(registry)
    default = parse_registry(DEFAULT_REGISTRY.read_text(), str(DEFAULT_REGISTRY))
    assert written.names() == [*default.names(), "newpartner"]  # the default's partners came along
    assert (written.get("paagency").feeds, written.get("paagency").states) == (
        default.get("paagency").feeds, default.get("paagency").states)
    new = written.get("newpartner")
    assert (new.feeds, new.states, new.description) == (
        ("eligibility",), frozenset({"PA", "NJ"}), "New Partner Org (contact: data@new.example)")
    assert registry.read_text().startswith("# The partner registry")  # the header comment kept
    assert run(capsys, "partners", "check")[0] == 0


def test_add_without_states_is_every_state_for_a_new_partner(registry, capsys):
    assert add(capsys, "acme", "--feed", "eligibility,outcomes")[0] == 0
    acme = load_registry(registry).get("acme")
    assert acme.feeds == ("eligibility", "outcomes") and acme.states is None


def test_add_to_an_existing_partner_extends_it(registry, capsys):
    registry.write_text(DEFAULT_REGISTRY.read_text())
    code, out, _ = add(capsys, "paagency", "--feed", "mailreturns")
    assert code == 0
    assert out.splitlines()[0] == ("extended partner paagency: feeds eligibility,outcomes,"
                                   "mailreturns; states PA")  # its states kept
    code, out, _ = add(capsys, "paagency", "--feed", "eligibility", "--states", "NJ")
    assert code == 0
    paagency = load_registry(registry).get("paagency")
    assert paagency.feeds == ("eligibility", "outcomes", "mailreturns")
    assert paagency.states == frozenset({"PA", "NJ"})
    assert paagency.description.startswith("Benefits agency of Pennsylvania")
    assert len(load_registry(registry).partners) == DEFAULT_COUNT

    before = registry.read_bytes()
    code, out, _ = add(capsys, "paagency", "--feed", "outcomes", "--states", "PA")
    assert code == 0 and out.strip().endswith(f"{registry} unchanged")
    assert registry.read_bytes() == before

    assert add(capsys, "paagency", "--feed", "outcomes", "--states", "all")[0] == 0
    assert load_registry(registry).get("paagency").states is None


def test_writing_the_shipped_registry_says_so(registry, capsys, monkeypatch):
    """BDT_PARTNERS unset means the project's own file; ``add`` writes it (a developer in a
    checkout expects that) and says which file it wrote and what to do. Here a copy stands in
    for the shipped file."""
    registry.write_text(DEFAULT_REGISTRY.read_text())
    monkeypatch.setattr(registry_module, "DEFAULT_REGISTRY", registry)
    code, out, _ = add(capsys, "acme", "--feed", "nudges")
    assert code == 0
    assert f"wrote {registry} (the registry shipped with the project; BDT_PARTNERS is unset)" in out
    assert "review the change and commit it, or set BDT_PARTNERS" in out


@pytest.mark.parametrize("argv, problem", [
    (["New-Partner", "--feed", "eligibility"], "bad partner name 'New-Partner'"),
    (["newpartner", "--feed", "eligibilty"], "unknown feed eligibilty"),
    (["newpartner", "--feed", "eligibility", "--states", "PA,XX"], "bad state code XX"),
    (["paagency", "--feed", "eligibility", "--states", "P4"], "bad state code P4"),
])
@pytest.mark.parametrize("exists", [True, False], ids=["registry", "no-registry-yet"])
def test_add_refuses_bad_input_with_exit_2_and_leaves_the_file(registry, capsys, argv, problem,
                                                               exists):
    if exists:
        registry.write_text(DEFAULT_REGISTRY.read_text() + "# a comment at the end\n")
        before = registry.read_bytes()
    code, out, err = add(capsys, *argv)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith("bdt partners add: ") and problem in line
    if exists:
        assert registry.read_bytes() == before
    else:
        assert not registry.exists()
    assert not [p for p in registry.parent.iterdir() if p.name.endswith(".tmp")]


BROKEN = """\
partners:
- name: acme
  feeds: [eligibility]
  states: [PA]
- name: beta
  feeds: [eligibility, outcome]
  states: all
"""


def test_a_broken_registry_is_refused_and_never_changed(registry, capsys):
    registry.write_text(BROKEN)
    before = registry.read_bytes()
    expected = (f"{registry}:6: partner 'beta': unknown feed 'outcome' (expected one of "
                "eligibility, outcomes, mailreturns, nudges)")
    for argv in (["add", "newpartner", "--feed", "eligibility"],
                 ["add", "acme", "--feed", "outcomes"], ["list"], ["check"],
                 ["check", str(registry)]):
        code, out, err = run(capsys, "partners", *argv)
        assert code == 2, argv
        assert err.splitlines() == [f"bdt partners {argv[0]}: {expected}"], argv
        assert "partner registry:" not in out
        assert registry.read_bytes() == before


def test_add_reports_a_registry_it_cannot_write(registry, capsys, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the registry's folder should be")
    target = blocker / "partners.yaml"
    monkeypatch.setenv("BDT_PARTNERS", str(target))
    code, out, err = add(capsys, "acme", "--feed", "eligibility")
    assert code == 2 and out == ""
    assert err.startswith(f"bdt partners add: cannot write the partner registry {target}: ")
    assert blocker.read_text() == "a file where the registry's folder should be"


# -- parse_registry's refusals name the line ------------------------------------------------------

@pytest.mark.parametrize("text, line, message", [
    ("partners:\n- name: acme\n  feeds:\n  - eligibility\n  - mailreturn\n", 5,
     "unknown feed 'mailreturn'"),
    ("partners:\n- name: acme\n  feeds: [eligibility]\n  states: [PA,\n    Pa]\n", 5,
     "bad state code 'Pa'"),
    ("partners:\n- name: acme\n  feeds: [eligibility]\n  states: [XX]\n", 4,
     "bad state code 'XX'"),
    ("partners:\n- name: Acme-1\n  feeds: [eligibility]\n", 2, "bad partner name 'Acme-1'"),
    ("partners:\n- name: acme\n  feeds: [eligibility]\n  contact: x@y\n", 4,
     "unknown key 'contact'"),
    ("partners:\n- name: acme\n  feeds: [eligibility]\n  - name: beta\n", 4, "not valid YAML"),
    ("partners:\n  - name: acme\n    feeds: [eligibility\n  - name: b\n", 4, "not valid YAML"),
    ("partner:\n- name: acme\n", 1, "unknown key 'partner'"),
    ("partners:\n- name: acme\n", 2, "partner without feeds"),
])
def test_parse_registry_names_the_line_of_the_rule_broken(text, line, message):
    with pytest.raises(RegistryError) as refused:
        parse_registry(text, "reg.yaml")
    assert str(refused.value).startswith(f"reg.yaml:{line}: ")
    assert message in str(refused.value)


def test_a_duplicate_partner_names_both_lines():
    text = ("partners:\n- name: acme\n  feeds: [eligibility]\n- name: beta\n  feeds: [nudges]\n"
            "- name: acme\n  feeds: [outcomes]\n")
    with pytest.raises(RegistryError) as refused:
        parse_registry(text, "reg.yaml")
    assert str(refused.value) == ("reg.yaml:6: duplicate partner 'acme' (first defined at "
                                  "line 2)")


def test_the_shipped_registry_is_valid():
    shipped = parse_registry(DEFAULT_REGISTRY.read_text(), str(DEFAULT_REGISTRY))
    assert {"communitycare", "mailvendor", "nudgevendor", "paagency"} <= set(shipped.names())
