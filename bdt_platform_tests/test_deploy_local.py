"""``bdt deploy-local``, the multi-process deployment, end to end: PostgreSQL, the gRPC code
server, ``dagster-daemon`` and ``dagster-webserver`` as separate processes over a small
ingested home.

1. The monthly schedule, given a cron of every minute (``BDT_SCHEDULES``) and turned on the way
   an operator does (``source $BDT_HOME/deploy/env.sh; dagster schedule start``), is ticked by
   the real daemon; its ``build_warehouse`` run for the month just closed succeeds, with its
   checks.
2. Headless Chromium (Debian's, through Playwright) opens the deployment's UI, finds
   reports/outcomes in the asset catalog, launches one ``month|state`` partition from the
   Materialize dialog, and sees the run succeed with its checks passed; screenshots go to the
   test's folder and ``docs/img/dagster-ui-run.png``.
3. SIGTERM to ``bdt deploy-local`` stops every process it started (and their run workers) and
   its PostgreSQL.

Skipped with the reason when PostgreSQL's binaries or ``/usr/bin/chromium`` are missing
(``.ci/run`` installs both; under ``CI=true`` missing PostgreSQL fails).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from bdt_platform.core import partitions as parts
from bdt_platform.ops import deploy_local
from bdt_platform.ops.local_postgres import (LocalPostgres, PostgresUnavailable, binaries,
                                             free_port, server_user_prefix)
from bdt_platform.ops.schedules import DEFAULT_CONFIG, month_just_closed

from .conftest import TEST_PII_KEY

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
STATE = "PA"
SCREENSHOT = ROOT / "docs" / "img" / "dagster-ui-run.png"
REPOSITORY = {"repositoryLocationName": deploy_local.LOCATION_NAME,
              "repositoryName": "__repository__"}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _postgres_or_skip() -> None:
    try:
        binaries()
        server_user_prefix()
    except PostgresUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


class Running:
    """The ``bdt deploy-local`` subprocess and how to talk to it."""

    def __init__(self, home: Path, pg_dir: Path, month: dt.date, env: dict[str, str]):
        self.home, self.pg_dir, self.month, self.env = home, pg_dir, month, env
        self.port, self.grpc_port = free_port(), free_port()
        while self.grpc_port == self.port:
            self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.layout = deploy_local.Layout(home)
        self.out = home.parent / "deploy-local.out"
        self.process: subprocess.Popen | None = None
        self.processes: dict = {}

    def start(self, timeout: float = 300) -> None:
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bdt_platform.cli", "deploy-local", "--port",
                 str(self.port), "--grpc-port", str(self.grpc_port), "--pg-dir",
                 str(self.pg_dir), "--stop-timeout", "15"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                cwd=ROOT)
        deadline = time.monotonic() + timeout
        while "ready:" not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"bdt deploy-local exited {self.process.returncode}:\n"
                            f"{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"bdt deploy-local not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.5)
        self.processes = json.loads(self.layout.processes.read_text())["processes"]

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"== {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.layout.logs.glob("*.log")))

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql", data=json.dumps({"query": query,
                                                    "variables": variables}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            body = json.load(answer)
        assert "errors" not in body, body
        return body["data"]

    def operator(self, command: str) -> str:
        """A ``dagster`` command as an operator types it, after ``source env.sh``."""
        done = subprocess.run(
            ["bash", "-c", f"source {self.layout.env_file} && {sys.executable} -m dagster "
                           f"{command} -w {self.layout.workspace}"],
            capture_output=True, text=True, env=self.env, cwd=ROOT, timeout=180)
        assert done.returncode == 0, f"dagster {command}:\n{done.stdout}{done.stderr}"
        return done.stdout

    def runs(self, **tags: str) -> list[dict]:
        data = self.graphql("""
            query Runs($filter: RunsFilter) { runsOrError(filter: $filter) {
              ... on Runs { results { runId jobName status tags { key value } } } } }""",
                            filter={"tags": [{"key": k, "value": v} for k, v in tags.items()]})
        return data["runsOrError"]["results"]

    def _schedule(self) -> dict:
        data = self.graphql("""query S($s: ScheduleSelector!) { scheduleOrError(
            scheduleSelector: $s) { ... on Schedule { scheduleState { status ticks(limit: 10) {
            status runIds timestamp } } } } }""", s={**REPOSITORY, "scheduleName": "monthly_reporting"})
        return data["scheduleOrError"]["scheduleState"]

    def ticks(self) -> list[dict]:
        return self._schedule()["ticks"]

    def schedule_status(self) -> str:
        return self._schedule()["status"]

    def run_status(self, run_id: str) -> str:
        data = self.graphql("""query Run($id: ID!) { runOrError(runId: $id) {
            ... on Run { status } } }""", id=run_id)
        return data["runOrError"]["status"]

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (status := self.run_status(run_id)) not in TERMINAL:
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} still {status} after {timeout}s\n{self.logs()}")
            time.sleep(2)
        return status

    def check_evaluations(self, run_id: str) -> list[dict]:
        data = self.graphql("""query Logs($id: ID!) { logsForRun(runId: $id, limit: 5000) {
            ... on EventConnection { events { __typename
              ... on AssetCheckEvaluationEvent { evaluation { checkName success partition
                                                              assetKey { path } } } } } } }""",
                            id=run_id)
        return [e["evaluation"] for e in data["logsForRun"]["events"]
                if e["__typename"] == "AssetCheckEvaluationEvent"]

    def stop(self, timeout: float = 120) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    _postgres_or_skip()
    from bdt_platform.synthetic import generate

    folder = tmp_path_factory.mktemp("deploy")
    home = folder / "home"
    # As root PostgreSQL runs as the postgres user, which cannot enter pytest's 0700 folders.
    pg_dir = Path(tempfile.mkdtemp(prefix="bdt-deploy-pg-")) / "postgres"
    pg_dir.parent.chmod(0o711)  # others may pass through, not list
    # The month the schedule's tick reports (UTC): the one before this one.
    month = month_just_closed(dt.datetime.now(dt.timezone.utc))
    schedules = yaml.safe_load(DEFAULT_CONFIG.read_text())
    schedules["time_zone"] = "UTC"
    schedules["monthly_reporting"]["cron"] = "* * * * *"  # the next minute's tick
    (folder / "schedules.yaml").write_text(yaml.safe_dump(schedules))
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("BDT_", "DAGSTER_"))}
    env.update(BDT_HOME=str(home), BDT_PII_KEY=TEST_PII_KEY,
               BDT_SCHEDULES=str(folder / "schedules.yaml"),
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
    generate(home / "inbox", home / "casemgmt.sqlite", states=[STATE], months=[month],
             scale=0.2, seed=7, pii_key=TEST_PII_KEY)
    # Landed before the deployment starts (its own SQLite instance under $BDT_HOME/dagster):
    # the monthly run reads the raw tables from the warehouse.
    ingest = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "ingest", "--settle",
                             "0"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    running = Running(home, pg_dir, month, env)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        LocalPostgres(pg_dir, 0).stop()  # in case the deployment left it (a failed test)
        shutil.rmtree(pg_dir.parent, ignore_errors=True)


def test_the_daemon_ticks_the_monthly_schedule_and_its_run_succeeds(deployment):
    processes = deployment.processes
    assert set(processes) == {"postgres", "code-server", "daemon", "webserver"}
    assert all(deploy_local.alive(p["pid"]) for p in processes.values()), processes
    workspace = yaml.safe_load(deployment.layout.workspace.read_text())
    assert workspace["load_from"][0]["grpc_server"]["port"] == deployment.grpc_port
    instance = (deployment.layout.dagster_home / "dagster.yaml").read_text()
    assert "QueuedRunCoordinator" in instance and "postgres_url:\n      env:" in instance
    assert "password" not in instance
    # The follow-up runs (export, scorecard e-mails) are not what this test is about; stopped
    # so the browser's run does not queue behind them on the warehouse pool.
    deployment.operator("sensor stop reporting_followups")
    assert "Started schedule monthly_reporting" in deployment.operator(
        "schedule start monthly_reporting")
    deadline = time.monotonic() + 150  # the next minute, and the daemon's next look
    while not (ticks := [t for t in deployment.ticks() if t["status"] == "SUCCESS"]):
        if time.monotonic() > deadline:
            pytest.fail(f"no successful tick within 150s\n{deployment.logs()}")
        time.sleep(2)
    # One tick is the test; the next minute's would build the month again. (Stopped after the
    # tick has finished: the daemon writes the schedule's state back when a tick ends, so a
    # stop during a tick is undone by it.)
    deployment.operator("schedule stop monthly_reporting")
    assert deployment.schedule_status() == "STOPPED"
    [tick] = ticks
    runs = [r for r in deployment.runs(**{"dagster/schedule_name": "monthly_reporting"})
            if r["runId"] in tick["runIds"]]
    [run] = runs
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["jobName"] == "build_warehouse"
    assert tags["bdt/month"] == f"{deployment.month:%Y-%m}"
    assert tags["dagster/asset_partition_range_start"] == parts.partition_key(
        parts.STATES[0], deployment.month)
    assert tags["dagster/asset_partition_range_end"] == parts.partition_key(
        parts.STATES[-1], deployment.month)
    status = deployment.wait_for_run(run["runId"], timeout=600)
    assert status == "SUCCESS", deployment.logs()
    # Its checks (dbt's tests, the report's contract; one evaluation over the range) passed.
    checks = deployment.check_evaluations(run["runId"])
    assert checks and all(c["success"] for c in checks), [c for c in checks if not c["success"]]
    assert ["reports", "outcomes"] in [c["assetKey"]["path"] for c in checks]
    # The daemon recorded the tick and its run in PostgreSQL; no other tick ran since the stop.
    assert [t["runIds"] for t in deployment.ticks() if t["status"] != "SKIPPED"] == [
        [run["runId"]]]
    assert "Evaluating schedule `monthly_reporting`" in (
        deployment.layout.logs / "daemon.log").read_text()


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


def test_browser_launches_one_partition_from_the_ui_and_the_run_succeeds(deployment, browser,
                                                                        tmp_path):
    key = parts.partition_key(STATE, deployment.month)
    before = {r["runId"] for r in deployment.runs()}
    # Dagster's invitation to its community, a dialog a second after the first page on
    # localhost, would cover the launch dialog: dismissed as its Skip button does (the
    # instance remembers it, the browser too).
    assert deployment.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
    try:
        _launch_from_the_ui(deployment, context.new_page(), key, before, tmp_path)
    finally:
        context.close()  # no open connection to the webserver when it is stopped


def _launch_from_the_ui(deployment, page, key: str, before: set[str], tmp_path: Path) -> None:
    page.set_default_timeout(60_000)
    # The asset graph (Lineage) of the reports group: the outcomes node, with its checks row.
    page.goto(f'{deployment.url}/asset-groups~group:"reports"')
    node = page.locator("div", has=page.get_by_text("outcomes", exact=True)).filter(
        has_text="Asset checks").last
    node.wait_for()
    page.screenshot(path=str(tmp_path / "dagster-ui-graph.png"))
    # Its page (where the graph's node leads), and the Materialize dialog for one partition.
    page.goto(f"{deployment.url}/assets/reports/outcomes")
    page.get_by_role("button", name="Materialize…").click()
    dialog = page.locator(".dagster-dialog")
    dialog.get_by_text("Launch runs to materialize reports / outcomes").wait_for()
    month = dialog.get_by_placeholder("ex: 2023-01-01", exact=False)
    month.fill(deployment.month.isoformat())
    month.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    popover = page.locator(".dagster-popover")
    popover.locator("input").first.fill(STATE)
    popover.locator("span", has_text=STATE).last.click()
    page.keyboard.press("Escape")
    dialog.get_by_text("1 partition", exact=True).wait_for()
    page.screenshot(path=str(tmp_path / "dagster-ui-launch.png"))
    dialog.get_by_role("button", name="Launch 1 run").click()
    link = page.locator("a[href*='/runs/']").filter(has_text="View").first
    href = link.get_attribute("href")
    run_id = href.rsplit("/", 1)[-1]
    assert run_id not in before
    status = deployment.wait_for_run(run_id, timeout=300)
    page.goto(f"{deployment.url}{href}")
    page.get_by_text(f"partition: {key}").wait_for()
    if status != "SUCCESS":
        page.screenshot(path=str(tmp_path / "dagster-ui-run-failed.png"))
    assert status == "SUCCESS", deployment.logs()
    page.get_by_text("Success", exact=True).first.wait_for()
    # The run's event log (scrolled to its end) shows the contract check's evaluation.
    page.get_by_text(re.compile(r"Check contract succeeded for materialization of")).wait_for()
    page.wait_for_timeout(1500)  # the step timeline settles
    page.screenshot(path=str(tmp_path / "dagster-ui-run.png"))
    shutil.copyfile(tmp_path / "dagster-ui-run.png", SCREENSHOT)
    [run] = [r for r in deployment.runs() if r["runId"] == run_id]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == key
    checks = deployment.check_evaluations(run_id)
    assert checks and all(c["success"] for c in checks), checks
    assert {tuple(c["assetKey"]["path"]) for c in checks} == {("reports", "outcomes")}


def test_sigterm_stops_every_process_and_postgres(deployment):
    processes = deployment.processes
    pids = {name: p["pid"] for name, p in processes.items()}
    tree = set().union(*(deploy_local.descendants(pid) for pid in pids.values()))
    started = time.monotonic()
    code = deployment.stop()
    took = time.monotonic() - started
    output = deployment.output()
    assert code == 0, output
    for name in ("webserver", "daemon", "code-server", "postgres"):
        assert f"stopping {name}" in output
    # Reverse start order.
    assert (output.index("stopping webserver") < output.index("stopping daemon")
            < output.index("stopping code-server") < output.index("stopping postgres"))
    assert not [name for name, pid in pids.items() if deploy_local.alive(pid)], pids
    assert not [pid for pid in tree if deploy_local.alive(pid)], tree
    assert not LocalPostgres(deployment.pg_dir, 0).running()
    assert not deployment.layout.processes.exists()
    assert took < 60, output


def test_help_names_the_processes_and_the_files():
    done = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "deploy-local", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0
    for word in ("postgres", "code-server", "daemon", "webserver", "deploy/logs", "env.sh",
                 "dagster schedule start monthly_reporting", "--pg-url", "--stop-timeout"):
        assert word in done.stdout


def test_a_process_that_dies_at_start_is_named_and_the_rest_stopped(tmp_path):
    """BDT_DAGSTER_PG_URL names a server nothing answers on: the code server cannot open the
    instance and exits; deploy-local names it, shows the end of its log, starts nothing after
    it and exits 1, without showing the URL's password."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("BDT_", "DAGSTER_"))}
    env.update(BDT_HOME=str(tmp_path / "home"), BDT_PII_KEY=TEST_PII_KEY,
               BDT_DAGSTER_PG_URL=f"postgresql://nobody:s3cret@127.0.0.1:{free_port()}/none",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-m", "bdt_platform.cli", "deploy-local", "--port",
                           str(free_port()), "--grpc-port", str(free_port())],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert "bdt deploy-local: the code-server process (pid " in done.stderr
    assert "code-server.log" in done.stderr and "DB connection" in done.stderr
    assert "daemon " not in done.stdout and "webserver " not in done.stdout
    assert done.stdout.rstrip().endswith("stopped")
    assert "s3cret" not in said
    assert not (tmp_path / "home" / "deploy" / "processes.json").exists()
