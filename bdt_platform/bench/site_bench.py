"""The report site's benchmark: scorecard server time against the metric query it runs, and
many signed-in users at once.

Given a built ``$BDT_HOME`` (``bdt bench`` builds 51 states x 24 months at a small scale; or
``--build`` here), it starts ``bdt serve`` for that home in a child process on a free loopback
port and measures:

1. the scorecard's server time (``/``, p50/p95 over ``--requests`` requests, as the site
   records it in its usage rows: server time, not the client's), and the same metric query
   run directly on the warehouse through the metric layer (p50/p95), and their ratio;
2. ``--users`` concurrent signed-in users (threads, one HTTP client each) asking for the
   scorecard, state, metric, API and drill-down pages for ``--seconds``: requests, errors,
   requests/s and client-side p50/p95.

``run_site_bench(home, ...)`` returns the figures as a dict (``bdt bench`` can call it);
``python -m bdt_platform.bench.site_bench --home PATH`` prints them (``--json`` writes them).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_USER = "bench-admin"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BDT_", "DAGSTER_"))}
    env.update(BDT_HOME=str(home), BDT_PII_KEY=os.environ.get("BDT_PII_KEY",
                                                               "bench-key-not-a-secret"),
               DAGSTER_HOME=str(home / "dagster"), PYTHONWARNINGS="ignore")
    return env


def _bdt(*args: str) -> list[str]:
    return [sys.executable, "-m", "bdt_platform.cli", *args]


def build_home(home: Path, states: int = 51, months: int = 24, scale: float = 0.05) -> None:
    """generate + ingest + build ``states`` x ``months`` into ``home`` (child processes)."""
    from bdt_platform.core import partitions as parts

    codes = ",".join(parts.STATES[:states])
    first = parts.parse_month("2023-01")
    last = parts.add_months(first, months - 1)
    env = _env(home)
    for args in (("generate", "--states", codes, "--months", f"{first:%Y-%m}..{last:%Y-%m}",
                  "--scale", str(scale)), ("ingest", "--settle", "0"), ("build",)):
        subprocess.run(_bdt(*args), env=env, check=True, stdout=subprocess.DEVNULL)


def run_site_bench(home: Path, requests: int = 50, users: int = 20, seconds: float = 30.0,
                   echo=print) -> dict:
    """Measure the site on the built ``home`` (see the module docstring); the figures."""
    import httpx

    from bdt_platform.core.settings import load_settings
    from bdt_platform.metrics import MetricLayer
    from bdt_platform.site import usage
    from bdt_platform.site.store import SiteStore
    from bdt_platform.site.users import add_user

    home = Path(home).absolute()
    settings = load_settings(_env(home))
    password = secrets.token_urlsafe(12)
    store = SiteStore(settings.site_dir)
    add_user(store, BENCH_USER, "admin", password)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(_bdt("serve", "--port", str(port)), env=_env(home),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    figures: dict = {"home": str(home)}
    try:
        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"{url}/login", timeout=2)
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("bdt serve did not start")
                time.sleep(0.2)

        def signed_in() -> httpx.Client:
            client = httpx.Client(base_url=url, timeout=60)
            answer = client.post("/login", data={"username": BENCH_USER, "password": password})
            if answer.status_code != 303:
                raise RuntimeError(f"sign-in failed: {answer.status_code}")
            return client

        # 1. the scorecard: server time from the usage rows; the same query on the warehouse.
        client = signed_in()
        try:
            client.get("/")  # warm: targets, compiled SQL, snapshot open
            started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
            for _ in range(requests):
                client.get("/").raise_for_status()
        finally:
            client.close()
        server_ms = [r["ms"] for r in usage.rows(store) if r["path"] == "/"
                     and r["username"] == BENCH_USER and r["ts"] >= started][-requests:]
        from bdt_platform.core import partitions as parts
        from bdt_platform.core.resources import build_warehouse
        from bdt_platform.site.targets import load_targets

        direct = MetricLayer.for_warehouse(build_warehouse(settings), settings.dbt_project_dir)
        months = direct.months()
        names = list(load_targets(settings.site_targets_path,
                                  {m.name: m for m in direct.metrics()}).scorecard)
        window = (max(months[0], parts.add_months(months[-1], -12)), months[-1])
        direct.query(names, by=("state", "month"), months=window)  # warm
        query_ms = []
        for _ in range(requests):
            t = time.perf_counter()
            direct.query(names, by=("state", "month"), months=window)
            query_ms.append((time.perf_counter() - t) * 1000)
        figures.update(
            states=len(direct.states()), months=len(months), scorecard_requests=len(server_ms),
            scorecard_p50_ms=round(_pct(server_ms, 0.5), 2),
            scorecard_p95_ms=round(_pct(server_ms, 0.95), 2),
            query_p50_ms=round(_pct(query_ms, 0.5), 2), query_p95_ms=round(_pct(query_ms, 0.95), 2))
        figures["scorecard_vs_query"] = round(figures["scorecard_p50_ms"]
                                              / figures["query_p50_ms"], 2)
        echo(f"scorecard server time p50 {figures['scorecard_p50_ms']} ms, p95 "
             f"{figures['scorecard_p95_ms']} ms; the same query on the warehouse p50 "
             f"{figures['query_p50_ms']} ms: {figures['scorecard_vs_query']}x")

        # 2. many users at once.
        state, month = direct.states()[0], months[-1]
        paths = ["/", f"/states/{state}", "/metrics/approvals",
                 "/api/metrics/approvals?by=state,month",
                 f"/records/approvals?state={state}&month={month:%Y-%m}"]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds
        clients = [signed_in() for _ in range(users)]

        def user(i: int) -> None:
            client, n = clients[i], i
            while time.perf_counter() < stop_at:
                path = paths[n % len(paths)]
                n += 1
                t = time.perf_counter()
                try:
                    ok = client.get(path).status_code == 200
                    problem = None if ok else f"{path}: not 200"
                except httpx.HTTPError as exc:
                    problem = f"{path}: {exc!r}"
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)
                    if problem:
                        errors.append(problem)

        threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        for client in clients:
            client.close()
        figures.update(concurrent_users=users, concurrent_seconds=round(elapsed, 1),
                       concurrent_requests=len(latencies), concurrent_errors=len(errors),
                       concurrent_rps=round(len(latencies) / elapsed, 1),
                       concurrent_p50_ms=round(_pct(latencies, 0.5), 1),
                       concurrent_p95_ms=round(_pct(latencies, 0.95), 1),
                       concurrent_error_examples=errors[:5])
        echo(f"{users} users for {elapsed:.0f} s: {len(latencies)} requests "
             f"({figures['concurrent_rps']}/s), {len(errors)} errors, p50 "
             f"{figures['concurrent_p50_ms']} ms, p95 {figures['concurrent_p95_ms']} ms")
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return figures


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m bdt_platform.bench.site_bench",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True,
                        help="a built $BDT_HOME (with --build: made there first)")
    parser.add_argument("--build", action="store_true", help="generate, ingest and build "
                        "--states x --months at --scale into --home first")
    parser.add_argument("--states", type=int, default=51)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--scale", type=float, default=0.05)
    parser.add_argument("--requests", type=int, default=50,
                        help="scorecard requests timed (default 50)")
    parser.add_argument("--users", type=int, default=20, help="concurrent users (default 20)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long the users ask (default 30)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.build:
        build_home(args.home, args.states, args.months, args.scale)
    figures = run_site_bench(args.home, args.requests, args.users, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if figures.get("concurrent_errors") else 0


if __name__ == "__main__":
    sys.exit(main())
