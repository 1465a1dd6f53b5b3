"""Real Google Cloud API servers for tests, started by fixtures (no Docker, no account).

- **GCS**: ``gcp-storage-emulator`` speaks the GCS JSON API over HTTP; it runs in-process on an
  ephemeral 127.0.0.1 port, in memory, with the test bucket created.
- **BigQuery**: ``bqemulator`` (a BigQuery REST API emulator over DuckDB and sqlglot) runs as a
  subprocess from its own venv - it pins an older sqlglot than dbt needs, so it cannot share ours.
  The venv is made on first use under ``$XDG_CACHE_HOME/bdt-platform/bqemulator-1.4.0`` (default
  ``~/.cache/...``; ``BDT_BQEMULATOR_VENV`` overrides) with ``python -m venv`` and
  ``pip install bqemulator==1.4.0 numpy`` (about 40 s, once), and started through a launcher
  written here at run time that applies the two start-up patches of toolchain.md:
  1. DuckDB's ``INSTALL spatial`` needs the internet: ``_load_spatial`` becomes a no-op
     (GEOGRAPHY is then unsupported; the platform does not use it);
  2. google-cloud-bigquery sends small uploads as multipart with media type ``*/*``, which the
     emulator refuses: ``*/*`` joins its permitted media types.

Known emulator gaps are worked around here, in the tests, never in the product (README/reply).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

BQEMULATOR_VERSION = "1.4.0"
# bqemulator imports numpy for its builtin UDFs without declaring it.
BQEMULATOR_REQUIREMENTS = [f"bqemulator=={BQEMULATOR_VERSION}", "numpy==2.4.6"]
TEST_PROJECT = "bdt-test"
TEST_BUCKET = "bdt-test-lake"

_LAUNCHER = '''\
"""bqemulator with the two start-up patches bdt-platform's tests need (written by the fixture)."""
import sys

import bqemulator.storage.engine as engine

engine.DuckDBEngine._load_spatial = lambda self: None  # 1: INSTALL spatial needs the internet

import bqemulator.api.routes.upload as upload

upload._PERMITTED_MEDIA_CONTENT_TYPES = (  # 2: google-cloud-bigquery's multipart media type
    tuple(upload._PERMITTED_MEDIA_CONTENT_TYPES) + ("*/*",))

from bqemulator.cli import main

sys.exit(main())
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- GCS ------------------------------------------------------------------------------------------

@dataclass
class GcsEmulator:
    url: str
    bucket: str

    def storage_options(self) -> dict[str, str]:
        """What gcsfs needs to talk to the emulator (what resources.py passes in prod)."""
        return {"endpoint_url": self.url, "token": "anon"}


@contextlib.contextmanager
def run_gcs_emulator(bucket: str = TEST_BUCKET):
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    server.start()
    try:
        yield GcsEmulator(f"http://127.0.0.1:{port}", bucket)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gcs_emulator():
    with run_gcs_emulator() as emulator:
        yield emulator


# -- BigQuery -------------------------------------------------------------------------------------

@dataclass
class BigQueryEmulator:
    url: str
    project: str
    process: subprocess.Popen
    log: Path

    def client(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(project=self.project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=self.url))


def bqemulator_venv() -> Path:
    if os.environ.get("BDT_BQEMULATOR_VENV"):
        return Path(os.environ["BDT_BQEMULATOR_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "bdt-platform" / f"bqemulator-{BQEMULATOR_VERSION}"


def ensure_bqemulator(venv: Path | None = None) -> Path:
    """The emulator venv's python, installing it on first use (once per machine)."""
    venv = venv or bqemulator_venv()
    python = venv / "bin" / "python"
    marker = venv / ".bdt-ready"
    if marker.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes install once
        if marker.exists():
            return python
        started = time.monotonic()
        print(f"\n[bqemulator] creating {venv} (one-time install)...", file=sys.stderr)
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             *BQEMULATOR_REQUIREMENTS], capture_output=True, text=True)
        if installed.returncode != 0:
            pytest.fail(f"could not install {' '.join(BQEMULATOR_REQUIREMENTS)} into {venv}:\n"
                        f"{installed.stderr[-3000:]}")
        marker.write_text(" ".join(BQEMULATOR_REQUIREMENTS) + "\n")
        print(f"[bqemulator] installed in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return python


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def run_bqemulator(workdir: Path, project: str = TEST_PROJECT, timeout: float = 60.0):
    python = ensure_bqemulator()
    workdir.mkdir(parents=True, exist_ok=True)
    launcher = workdir / "bqemulator_launcher.py"
    launcher.write_text(_LAUNCHER)
    rest, grpc = free_port(), free_port()
    log = workdir / "bqemulator.log"
    url = f"http://127.0.0.1:{rest}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(python), str(launcher), "start", "--rest-port", str(rest), "--grpc-port",
             str(grpc), "--project", project, "--ephemeral", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
            env={**os.environ, "BQEMU_UPLOAD_STAGING_DIR": str(workdir / "uploads")})
    try:
        deadline = time.monotonic() + timeout
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bqemulator did not start (see {log}):\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield BigQueryEmulator(url, project, process, log)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    with run_bqemulator(tmp_path_factory.mktemp("bqemulator")) as emulator:
        yield emulator


def main() -> None:
    """``python -m bdt_platform_tests.emulators``: both emulators until Ctrl-C, for trying
    ``BDT_ENV=prod`` by hand; prints the variables to export."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bdt-emulators-") as work:
        with run_gcs_emulator() as gcs, run_bqemulator(Path(work)) as bq:
            print(f"export BDT_ENV=prod BDT_GCP_PROJECT={bq.project} BDT_GCS_BUCKET={gcs.bucket} "
                  f"STORAGE_EMULATOR_HOST={gcs.url} BIGQUERY_EMULATOR_HOST={bq.url}", flush=True)
            print("emulators running (in memory); Ctrl-C stops them", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while bq.process.poll() is None:
                    time.sleep(1)


if __name__ == "__main__":
    main()
