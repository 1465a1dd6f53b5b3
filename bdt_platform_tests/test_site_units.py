"""The report site's parts without a server: users and `bdt users add`, targets files, embed
tokens, query-value parsing and scope."""

from __future__ import annotations

import io
import time

import pytest

from bdt_platform.site import embed, scope
from bdt_platform.site.auth import Forbidden
from bdt_platform.site.store import SiteStore
from bdt_platform.site.targets import TargetsError, load_targets
from bdt_platform.site.users import User, UserError, add_user, authenticate, get_user

from .conftest import cli_environment


def test_users_are_stored_with_argon2_hashes(tmp_path):
    store = SiteStore(tmp_path)
    add_user(store, "pat", "partner", "s3cret", ["pa", "NJ"])
    assert get_user(store, "pat") == User("pat", "partner", ("NJ", "PA"))
    [row] = store.read("SELECT password_hash FROM users")
    assert row["password_hash"].startswith("$argon2") and "s3cret" not in row["password_hash"]
    assert authenticate(store, "pat", "s3cret").username == "pat"
    assert authenticate(store, "pat", "wrong") is None
    assert authenticate(store, "nobody", "s3cret") is None
    for args, reason in [(("x", "boss", "pw"), "unknown role"),
                         (("x", "partner", "pw"), "needs --states"),
                         (("x", "partner", "pw", ["XX"]), "unknown state"),
                         (("x", "analyst", "pw", ["PA"]), "for partner users"),
                         (("x", "admin", ""), "empty password"),
                         (("bad name", "admin", "pw"), "bad user name")]:
        with pytest.raises(UserError, match=reason):
            add_user(store, *args)


def test_bdt_users_add_reads_stdin_and_exits_2_on_bad_input(tmp_path, monkeypatch, capsys):
    from bdt_platform.cli import main

    cli_environment(monkeypatch, tmp_path / "home", tmp_path / "partners.yaml")
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert main(["users", "add", "ann", "--role", "analyst"]) == 0
    for argv, stdin, reason in [(["--role", "boss"], "pw\n", "unknown role"),
                                (["--role", "partner"], "pw\n", "needs --states"),
                                (["--role", "partner", "--states", "PA,QQ"], "pw\n", "QQ"),
                                (["--role", "admin"], "\n", "empty password")]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        assert main(["users", "add", "bob", *argv]) == 2
        assert reason in capsys.readouterr().err
    assert main(["users", "list"]) == 0
    assert "ann" in capsys.readouterr().out


def test_create_demo_user(tmp_path):
    from bdt_platform.site import create_demo_user

    from .conftest import make_settings

    settings = make_settings(tmp_path / "home")
    name, password = create_demo_user(settings)
    assert authenticate(SiteStore(settings.site_dir), name, password).role == "admin"


class _M:
    def __init__(self, higher=True):
        self.higher_is_better = higher


def test_targets_are_checked_with_clear_errors(tmp_path):
    from bdt_platform.core.settings import Settings

    metrics = {"approvals": _M(), "approval_rate": _M(), "cost_per_enrollment": _M(False)}
    path = tmp_path / "t.yaml"
    path.write_text("scorecard: [approvals, approval_rate]\n"
                    "targets:\n  approval_rate: {target: 0.5, states: {pa: 0.6}}\n"
                    "  cost_per_enrollment: {target: 40}\n")
    t = load_targets(path, metrics)
    assert t.targets["approval_rate"].direction == "at_least"
    assert t.targets["cost_per_enrollment"].direction == "at_most"
    assert t.targets["approval_rate"].misses("PA", 0.55)
    assert not t.targets["approval_rate"].misses("NJ", 0.55)
    for text, reason in [("scorecard: [nope]\n", "unknown metric 'nope'"),
                         ("scorecard: []\n", "non-empty list"),
                         ("scorecard: [approvals]\ntargets: {approvals: {target: x}}\n",
                          "must be a number"),
                         ("scorecard: [approvals]\ntargets: {approvals: {target: 1, "
                          "direction: up}}\n", "at_least or at_most"),
                         ("scorecard: [approvals]\ntargets: {approvals: {target: 1, "
                          "states: {ZZ: 2}}}\n", "unknown state"),
                         ("scorecard: [approvals]\nextra: 1\n", "unknown key"),
                         ("scorecard: [approvals\n", "not valid YAML")]:
        path.write_text(text)
        with pytest.raises(TargetsError, match=reason):
            load_targets(path, metrics)
    # The shipped default names real metrics (checked against the dbt metric definitions).
    import yaml

    shipped = yaml.safe_load(Settings.__dataclass_fields__["site_targets_path"].default
                             .read_text())
    defined = yaml.safe_load((Settings.__dataclass_fields__["dbt_project_dir"].default
                              / "models" / "semantic" / "_metrics.yml").read_text())
    names = {m["name"] for m in defined["metrics"]}
    assert set(shipped["scorecard"]) <= names and set(shipped["targets"]) <= names


def test_embed_tokens_are_signed_scoped_and_expire():
    token = embed.make_token("k", "/states/PA", ["PA"], 60, "ada")
    link = embed.read_token("k", token)
    assert (link.page, link.states, link.frame_ancestors) == ("/states/PA", ("PA",), ("*",))
    with pytest.raises(embed.EmbedError, match="not valid"):
        embed.read_token("other", token)
    with pytest.raises(embed.EmbedError, match="not valid"):
        embed.read_token("k", token.replace(".", "x.", 1))
    for args, reason in [(("/explore", ["PA"], 60), "cannot be embedded"),
                         (("/states/NJ", ["PA"], 60), "not among"),
                         (("/", [], 60), "needs the states"),
                         (("/", ["PA"], 0), "lifetime")]:
        with pytest.raises(embed.EmbedError, match=reason):
            embed.make_token("k", *args, "ada")
    short = embed.make_token("k", "/", ["PA"], 1, "ada")
    time.sleep(2.1)
    with pytest.raises(embed.EmbedError, match="expired"):
        embed.read_token("k", short)


def test_query_values_are_parsed_and_scoped():
    assert scope.parse_states("pa, nj") == ["NJ", "PA"]
    assert scope.parse_months("2024-01..2024-03")[1].month == 3
    for fn, value in [(scope.parse_states, "PA' OR 1=1"), (scope.parse_months, "2024-1"),
                      (scope.parse_by, "state;drop"), (scope.parse_month, "2024-03-01'--")]:
        with pytest.raises(scope.BadRequest):
            fn(value)
    partner = User("pat", "partner", ("PA",))
    assert scope.allowed_states(partner, None) == ["PA"]
    with pytest.raises(Forbidden, match="NJ"):
        scope.allowed_states(partner, ["PA", "NJ"])
    assert scope.allowed_states(User("ann", "analyst", None), None) is None
