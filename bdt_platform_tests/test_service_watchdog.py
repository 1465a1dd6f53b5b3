"""The dbt step's watchdog on a remote warehouse (``warehouse/service_watchdog.py``), against a
real HTTP server on 127.0.0.1 and a real child process; and its setting.

The whole path (BigQuery emulator cut mid-build, dbt stopped, the retry converging) is
test_prod_parity.py's ``test_bigquery_unreachable_mid_build``.
"""

import http.server
import os
import subprocess
import sys
import threading
import time

import pytest

from bdt_platform.core.resources import bigquery_probe_url, build_resources
from bdt_platform.core.settings import SettingsError, load_settings
from bdt_platform.core.retries import transient_cause
from bdt_platform.warehouse.service_watchdog import (ServiceWatchdog, WarehouseUnreachable,
                                                     interrupt, probe)


class _Server:
    """An HTTP server answering every GET with ``status``; ``stop()`` closes its port."""

    def __init__(self, status: int = 200):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.status, self.hits = status, 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/bigquery/v2/projects/p"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_any_answer_below_500_is_reachable_and_5xx_or_a_closed_port_is_not():
    server = _Server(200)
    try:
        assert probe(server.url) is None
        server.status = 401  # Google's answer without credentials: the service is there
        assert probe(server.url) is None
        server.status = 503
        assert probe(server.url) == "HTTP 503 Service Unavailable"
    finally:
        server.stop()
    problem = probe(server.url, timeout=2)
    assert problem is not None and "refused" in problem.lower()


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_service_gone_for_the_grace_period_stops_the_process_and_says_so():
    server, process = _Server(200), _sleeper()
    lost_at = []
    watchdog = ServiceWatchdog("BigQuery", server.url + "/datasets?maxResults=1", 2.0,
                               on_lost=lambda: (lost_at.append(time.monotonic()),
                                                interrupt(process, grace=5)), interval=0.25)
    try:
        with watchdog:
            time.sleep(1.0)
            assert server.hits >= 2 and not watchdog.lost.is_set()
            server.stop()
            stopped = time.monotonic()
            assert watchdog.lost.wait(timeout=10)
            assert process.wait(timeout=10) != 0  # interrupted, not finished
    finally:
        process.kill()
    assert 2.0 <= lost_at[0] - stopped < 2.0 + 2.5
    error = watchdog.error("dbt build")
    assert isinstance(error, WarehouseUnreachable)
    assert transient_cause(error) is error  # the step's retry policy runs it again
    text = str(error)
    assert server.url in text and "?maxResults" not in text
    assert "for 2 s" in text or "for 3 s" in text
    assert "refused" in text.lower() and "dbt build was stopped" in text


def test_a_short_outage_is_waited_out():
    server, process = _Server(503), _sleeper()
    calls = []
    try:
        with ServiceWatchdog("BigQuery", server.url, 3.0, on_lost=lambda: calls.append(1),
                             interval=0.25):
            time.sleep(1.5)  # 503s, shorter than the grace period
            server.status = 200
            time.sleep(2.5)  # the 503s before do not count any more
            server.status = 503
            time.sleep(1.5)
        assert calls == [] and process.poll() is None
    finally:
        process.kill()
        server.stop()


@pytest.fixture
def restored_environ():
    """build_resources exports the dbt profile's variables into os.environ: put it back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_the_setting_reaches_the_warehouse_dbt_and_the_watchdog(tmp_path, restored_environ):
    environ = {"BDT_ENV": "prod", "BDT_HOME": str(tmp_path), "BDT_PII_KEY": "k" * 32,
               "BDT_GCP_PROJECT": "proj", "BDT_GCS_BUCKET": "bucket"}
    assert load_settings(environ).bq_retry_seconds == 300
    for bad in ("0", "-5", "2.5", "soon", "90000"):
        with pytest.raises(SettingsError, match="BDT_BQ_RETRY_SECONDS must be a whole number"):
            load_settings({**environ, "BDT_BQ_RETRY_SECONDS": bad})
    settings = load_settings({**environ, "BDT_BQ_RETRY_SECONDS": "45"})
    assert bigquery_probe_url(settings) == ("https://bigquery.googleapis.com/bigquery/v2/projects/"
                                            "proj/datasets?maxResults=1")
    resources = build_resources(settings)
    assert resources["warehouse"].retry_seconds == 45
    assert resources["warehouse"].retry.timeout == 45
    dbt = resources["dbt"]
    assert (dbt.service_name, dbt.service_unreachable_seconds) == ("BigQuery", 45)
    assert dbt.service_probe_url == bigquery_probe_url(settings)
    assert os.environ["BDT_BQ_RETRY_SECONDS"] == "45"  # the dbt profile's deadline

    local = build_resources(load_settings({"BDT_HOME": str(tmp_path / "local")}))
    assert local["dbt"].service_probe_url == ""  # DuckDB: nothing to watch
