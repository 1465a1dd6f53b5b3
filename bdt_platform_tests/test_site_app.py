"""The report site against a real built home, served by uvicorn on a free port: HTTP-level
tests with httpx, browser tests with Playwright driving Debian's chromium, the site answering
while a build writes, and the usage rows each request leaves.

One home, one server and one browser for the whole module (``site_fixtures.py``).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from pathlib import Path

import pytest

from bdt_platform_tests.site_fixtures import (LATEST, PASSWORD, RESENT, RunningSite, built_home,
                                              clear_login_failures, resend_outcomes, usage_rows)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = built_home(tmp_path_factory.mktemp("site"))
    yield world
    world.close()


@pytest.fixture(scope="module")
def site(world):
    running = RunningSite(world.settings)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def layer(world):
    from bdt_platform.metrics import MetricLayer

    layer = MetricLayer.for_settings(world.settings, snapshot=True)
    layer.refresh()
    return layer


@pytest.fixture(scope="module")
def resent(world, site):
    """A partner re-sends PA 2024-03's outcomes file; it is ingested and built while a thread
    keeps asking the site for pages and API answers. ``(file name, [(path, status)])``."""
    answers: list[tuple[str, int]] = []
    stop = threading.Event()
    paths = ["/", "/api/metrics/approvals?by=state,month", "/states/PA",
             f"/api/records/approvals?state=PA&month={LATEST:%Y-%m}"]

    def hammer():
        with site.client("ann") as client:
            while not stop.is_set():
                for path in paths:
                    try:
                        answers.append((path, client.get(path).status_code))
                    except Exception as exc:  # noqa: BLE001 - recorded as a failure
                        answers.append((path, repr(exc)))
                    time.sleep(0.05)  # steady traffic, without starving the build of the GIL

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        name = resend_outcomes(world)
    finally:
        stop.set()
        thread.join(30)
    return name, answers


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-component-update"])
        yield browser
        browser.close()


def _sign_in(browser, site, user: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.goto(f"{site.url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
    return context, page


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


# --- HTTP ----------------------------------------------------------------------------------

def test_without_a_session_pages_redirect_and_api_answers_401(site):
    with site.client() as client:
        page = client.get("/states/PA")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fstates%2FPA"
        for path in ("/api/metrics/approvals", "/api/records/approvals?state=PA&month=2024-03",
                     "/download/records/approvals.csv?state=PA&month=2024-03"):
            answer = client.get(path)
            assert answer.status_code == 401 and "not signed in" in answer.json()["error"]
        assert client.get("/login").status_code == 200
        assert client.get("/static/vega.js").headers["content-type"].startswith("text/javascript")


def test_wrong_password_is_401_and_never_says_whether_the_user_exists(site, world):
    with site.client() as client:
        known = client.post("/login", data={"username": "ann", "password": "wrong"})
        unknown = client.post("/login", data={"username": "nobody", "password": "wrong"})
    assert known.status_code == unknown.status_code == 401
    message = re.compile(r'id="login-error">([^<]*)<')
    assert message.search(known.text).group(1) == message.search(unknown.text).group(1)
    clear_login_failures(world.settings)


def test_repeated_wrong_passwords_are_throttled(site, world):
    throttle = site.app.state.site.throttle
    per_address, throttle.per_address = throttle.per_address, 8  # fewer argon2 checks
    try:
        with site.client() as client:
            for _ in range(5):
                assert client.post("/login", data={"username": "ann",
                                                   "password": "nope"}).status_code == 401
            # Now even the right password waits: 429.
            assert client.post("/login", data={"username": "ann",
                                               "password": PASSWORD}).status_code == 429
            # Other names from the same address, until the address is throttled too.
            for i in range(3):
                client.post("/login", data={"username": f"guess{i}", "password": "x"})
            answer = client.post("/login", data={"username": "pat", "password": PASSWORD})
            assert answer.status_code == 429 and "too many" in answer.text
    finally:
        throttle.per_address = per_address
        clear_login_failures(world.settings)
    with site.client("ann"):
        pass  # signs in again once the failures are gone


def test_csrf_tokens_are_required_on_posts(site):
    with site.client("ada") as client:
        assert client.post("/admin/embed", data={"page": "/", "states": "PA"}).status_code == 403
        assert client.post("/logout").status_code == 403
        form = client.get("/admin/embed")
        made = client.post("/admin/embed", data={"page": "/", "states": "PA",
                                                 "csrf": _csrf(form.text)})
        assert made.status_code == 200 and "/embed/" in made.text
    with site.client() as client:
        client.get("/login")  # the sign-in page's cookie: now the form's token is required
        answer = client.post("/login", data={"username": "ann", "password": PASSWORD})
        assert answer.status_code == 403 and "CSRF" in answer.text
    with site.client() as client:  # a forged cross-site form: no cookie, a foreign Origin
        answer = client.post("/login", data={"username": "ann", "password": PASSWORD},
                             headers={"Origin": "https://evil.example"})
        assert answer.status_code == 403
        # With the sign-in page's token, as a browser does it.
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        answer = client.post("/login", data={"username": "ann", "password": PASSWORD,
                                             "csrf": token}, headers={"Origin": site.url})
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie


def test_the_api_gives_the_metric_layer_numbers(site, layer):
    with site.client("ann") as client:
        answer = client.get("/api/metrics/approvals?by=state,month&states=PA"
                            "&months=2024-02..2024-03").json()
        records = client.get("/api/records/approvals?state=PA&month=2024-03").json()
        csv = client.get("/download/records/approvals.csv?state=PA&month=2024-03")
    expected = layer.query(["approvals"], by=("state", "month"), states=["PA"],
                           months=(dt.date(2024, 2, 1), LATEST))
    assert answer["metric"] == "approvals"
    assert answer["rows"] == [{"state": "PA", "month": m.isoformat(), "value": v}
                              for m, v in zip(expected["month"], expected["approvals"])]
    assert records["count"] == len(records["rows"]) == answer["rows"][-1]["value"]
    assert set(records["rows"][0]) == {"record_id", "person_token", "program", "occurred_on",
                                       "source_file", "amount"}
    assert csv.headers["content-type"].startswith("text/csv")
    assert len(csv.text.strip().splitlines()) == records["count"] + 1


@pytest.mark.parametrize("path, status, reason", [
    ("/api/metrics/no_such_metric", 404, "unknown metric"),
    ("/api/metrics/approvals?by=county", 400, "unknown dimension"),
    ("/api/metrics/pieces_mailed?by=program", 400, "no dimension program"),
    ("/api/metrics/approvals?states=XX", 400, "unknown state"),
    ("/api/metrics/approvals?months=2024-13", 400, "not a month"),
    ("/api/metrics/approvals?months=2024-03..2024-01", 400, "ends before"),
    ("/api/records/approvals?state=PA&month=March", 400, "not a month"),
    ("/api/records/approvals?month=2024-03", 400, "state is required"),
    # SQL in a query string is only ever a value: an unknown state, metric or dimension.
    ("/api/metrics/approvals?states=PA'%20OR%20'1'='1", 400, "unknown state"),
    ("/api/metrics/approvals%3B%20DROP%20TABLE%20reports.outcomes", 404, "unknown metric"),
    ("/api/metrics/approvals?by=state,month%20--", 400, "unknown dimension"),
    ("/api/metrics/approvals?months=2024-01'%20OR%201=1--", 400, "not a month"),
    ("/api/records/approvals?state=PA&month=2024-03'%3B--", 400, "not a month"),
    ("/download/explore.csv?metrics=approvals,1%3Bselect%201", 404, "unknown metric"),
])
def test_bad_values_are_refused_with_the_reason(site, path, status, reason):
    with site.client("ann") as client:
        answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["error"]


def test_bad_values_on_pages(site):
    with site.client("ann") as client:
        assert client.get("/metrics/no_such_metric").status_code == 404
        answer = client.get("/explore?metrics=approvals&by=state,month&states=PA;DROP")
        assert answer.status_code == 400 and "unknown state" in answer.text
        assert client.get("/states/ZZ").status_code == 400
        assert client.get("/?month=1999-01").status_code == 400
        assert client.get("/usage").status_code == 403  # admins only


def test_a_partner_sees_only_their_states_over_http(site):
    with site.client("pat") as client:
        rows = client.get("/api/metrics/approvals?by=state,month").json()["rows"]
        assert rows and {r["state"] for r in rows} == {"PA"}
        for path in ("/api/metrics/approvals?states=RI", "/api/metrics/approvals?states=PA,RI",
                     "/api/records/approvals?state=RI&month=2024-03",
                     "/download/records/approvals.csv?state=RI&month=2024-03",
                     "/download/explore.csv?metrics=approvals&states=RI",
                     "/records/approvals?state=RI&month=2024-03",
                     "/explain?state=RI&month=2024-03", "/states/RI"):
            assert client.get(path).status_code == 403, path
        explore = client.get("/download/explore.csv?metrics=approvals,calls&by=state")
        assert explore.status_code == 200 and "RI" not in explore.text


def test_behind_a_proxy_the_identity_header_is_the_user(world):
    """BDT_SITE_IDENTITY_HEADER: the proxy in front of the site signs users in; the site trusts
    that header (and nothing else), and a partner's scope still holds."""
    import httpx

    from bdt_platform_tests.conftest import make_settings

    proxied = make_settings(world.settings.home, BDT_SITE_IDENTITY_HEADER="X-Forwarded-User")
    running = RunningSite(proxied)
    try:
        with httpx.Client(base_url=running.url, timeout=60) as client:
            assert client.get("/api/metrics/approvals").status_code == 401  # no header
            unknown = client.get("/api/metrics/approvals", headers={"X-Forwarded-User": "eve"})
            assert unknown.status_code == 403 and "bdt users add" in unknown.text
            pat = {"X-Forwarded-User": "pat"}
            rows = client.get("/api/metrics/approvals?by=state,month", headers=pat).json()["rows"]
            assert rows and {r["state"] for r in rows} == {"PA"}
            assert client.get("/api/metrics/approvals?states=RI", headers=pat).status_code == 403
            # A session cookie is not a way in when the proxy decides.
            assert client.post("/login", data={"username": "ann", "password": PASSWORD}
                               ).status_code in (303, 400, 403, 404)
            assert client.get("/api/metrics/approvals").status_code == 401
    finally:
        running.stop()


def test_embedded_links_show_one_page_for_their_states(site, world):
    from bdt_platform.core.settings import site_secret
    from bdt_platform.site.embed import make_token

    with site.client("ada") as admin:
        form = admin.get("/admin/embed")
        made = admin.post("/admin/embed", data={"page": "/", "states": "PA", "hours": "1",
                                                "csrf": _csrf(form.text)})
        link = re.search(r'id="embed-link" href="([^"]+)"', made.text).group(1)
        refused = admin.post("/admin/embed", data={"page": "/states/RI", "states": "PA",
                                                   "csrf": _csrf(form.text)})
        assert refused.status_code == 400 and "not among the link" in refused.text
    token = link.rsplit("/", 1)[1]
    with site.client() as anyone:
        shown = anyone.get(f"/embed/{token}")
        assert shown.status_code == 200
        assert 'data-state="PA"' in shown.text and 'data-state="RI"' not in shown.text
        assert shown.headers["content-security-policy"] == "frame-ancestors *"
        assert "x-frame-options" not in shown.headers
        tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert anyone.get(f"/embed/{tampered}").status_code == 403
        other = make_token("another secret", "/", ["RI"], 3600, "mallory")
        assert anyone.get(f"/embed/{other}").status_code == 403
        short = make_token(site_secret(world.settings), "/states/PA", ["PA"], 1, "ada")
        assert anyone.get(f"/embed/{short}").status_code == 200
        time.sleep(2.1)  # itsdangerous timestamps are whole seconds
        expired = anyone.get(f"/embed/{short}")
        assert expired.status_code == 403 and "expired" in expired.text
        # Ordinary pages may not be framed.
        assert anyone.get("/login").headers["x-frame-options"] == "DENY"


def test_the_site_keeps_answering_while_a_build_writes(resent):
    name, answers = resent
    assert name == RESENT
    failures = [a for a in answers if a[1] != 200]
    assert len(answers) >= 8 and not failures, failures[:5]


# --- the browser ---------------------------------------------------------------------------

def test_browser_scorecard_drill_down_charts_and_explain(browser, site, world, layer, resent,
                                                          tmp_path):
    context, page = _sign_in(browser, site, "ada")
    try:
        layer.refresh()
        expected = layer.query(["approvals"], by=("state", "month"), states=["PA"],
                               months=(LATEST, LATEST))["approvals"].iloc[0]
        cell = page.locator('td[data-metric="approvals"][data-state="PA"]')
        assert float(cell.get_attribute("data-value")) == expected
        assert cell.locator("a.num").inner_text() == f"{expected:,.0f}"
        page.wait_for_selector('.chart[data-rendered="1"] svg g.mark-line path', timeout=20000)
        assert page.locator(".chart svg g.mark-line path").count() >= 2  # sparklines
        page.screenshot(path=str(tmp_path / "scorecard.png"), full_page=True)
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / "docs" / "img" / "report-site-scorecard.png"))

        cell.locator("a.num").click()
        page.wait_for_url(re.compile(r"/records/approvals\?state=PA&month=2024-03"))
        assert int(page.locator("#count").get_attribute("data-count")) == expected
        assert page.locator("#records tr").count() == expected + 1
        assert page.locator("#csv").get_attribute("href").startswith("/download/records/")
        page.screenshot(path=str(tmp_path / "records.png"), full_page=True)

        page.goto(f"{site.url}/states/PA")
        page.wait_for_selector('#funnel .chart[data-rendered="1"] svg g.mark-rect path',
                               timeout=20000)
        page.screenshot(path=str(tmp_path / "state.png"), full_page=True)

        page.goto(f"{site.url}/explain?state=PA&month=2024-03")
        explanation = page.locator("#explanation").inner_text()
        assert RESENT in explanation and "approvals" in explanation
        page.screenshot(path=str(tmp_path / "explain.png"), full_page=True)

        page.goto(f"{site.url}/explore?metrics=approvals,calls&by=state,month&states=PA"
                  "&months=2023-06..2024-03")
        page.wait_for_selector('.chart[data-rendered="1"] svg g.mark-line path', timeout=20000)
        assert page.locator("#explore-table tr").count() == 10 + 1
        page.screenshot(path=str(tmp_path / "explore.png"), full_page=True)
    finally:
        context.close()
    paths = [r["path"] for r in usage_rows(world.settings) if r["username"] == "ada"]
    for wanted in ("/", "/records/approvals?state=PA&month=2024-03", "/states/PA",
                   "/explain?state=PA&month=2024-03"):
        assert wanted in paths, wanted


def test_browser_partner_sees_only_their_state(browser, site, world, tmp_path):
    context, page = _sign_in(browser, site, "pat")
    try:
        rows = page.locator("#scorecard tbody tr[data-state]")
        assert [rows.nth(i).get_attribute("data-state") for i in range(rows.count())] == ["PA"]
        assert not re.search(r"\bRI\b", page.content())
        page.screenshot(path=str(tmp_path / "partner.png"), full_page=True)
        assert page.goto(f"{site.url}/states/RI").status == 403
        assert "you may not see RI" in page.locator("#error").inner_text()
        api = context.request.get(f"{site.url}/api/metrics/approvals?states=RI")
        download = context.request.get(
            f"{site.url}/download/records/approvals.csv?state=RI&month=2024-03")
        assert api.status == download.status == 403
    finally:
        context.close()
    seen = {(r["path"], r["status"]) for r in usage_rows(world.settings) if r["username"] == "pat"}
    assert ("/", 200) in seen and ("/states/RI", 403) in seen
    assert ("/api/metrics/approvals?states=RI", 403) in seen
    assert ("/download/records/approvals.csv?state=RI&month=2024-03", 403) in seen


# --- usage -----------------------------------------------------------------------------------

def test_usage_rows_command_page_and_asset(site, world, capsys):
    import argparse

    import dagster as dg

    from bdt_platform.cli.site import cmd_usage
    from bdt_platform.site.assets import KEY

    with site.client("ann") as client:
        client.get("/api/metrics/calls?by=state,month&states=PA")
    [row] = [r for r in usage_rows(world.settings, "/api/metrics/calls")
             if r["username"] == "ann"]
    assert (row["metric"], row["states"], row["kind"], row["status"]) == ("calls", "PA", "api",
                                                                          200)
    assert row["rows"] == 13 and row["ms"] > 0

    assert cmd_usage(argparse.Namespace(since="2000-01-01", format="csv"), world.settings) == 0
    out = capsys.readouterr().out
    assert out.startswith("ts,username,path,metric,states,rows,ms") and "/api/metrics/calls" in out

    with site.client("ada") as admin:
        page = admin.get("/usage")
    assert page.status_code == 200 and "calls" in page.text and "ann" in page.text

    result = dg.materialize([world.defs.get_assets_def(KEY)], instance=world.instance,
                            resources={"warehouse": world.defs.resources["warehouse"]})
    assert result.success
    copied = world.defs.resources["warehouse"].query("select count(*) as n, "
                                                     "count(distinct username) as users "
                                                     "from usage.page_views")
    assert copied["n"].iloc[0] >= len(usage_rows(world.settings)) - 5
    assert copied["users"].iloc[0] >= 3
