"""``bdt deploy-local``: PostgreSQL, the gRPC code server, the daemon and the webserver as
separate processes on this machine, started and stopped together (``ops/deploy_local.py``;
docs/deploy-local.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bdt_platform.cli.common import _echo, _refuse
from bdt_platform.core.settings import Settings, _dagster_pg_url

DESCRIPTION = """\
Run the platform the way Kubernetes runs it, as separate processes on this machine:

  postgres     the Dagster instance's database: BDT_DAGSTER_PG_URL (or --pg-url) when set,
               else a private server in $BDT_HOME/postgres (--pg-dir), created the first time
  code-server  dagster api grpc -m bdt_platform.definitions (loads the code, runs the runs)
  daemon       dagster-daemon run (schedules, sensors, run queue, retries, monitoring)
  webserver    dagster-webserver (the UI, on --host:--port)

Each process logs to $BDT_HOME/deploy/logs/<name>.log; the instance is
$BDT_HOME/deploy/dagster/dagster.yaml, the workspace $BDT_HOME/deploy/workspace.yaml, and
`source $BDT_HOME/deploy/env.sh` points dagster and bdt commands at the deployment.
Schedules start stopped: turn monthly_reporting on in the UI (Automation) or with
`dagster schedule start monthly_reporting -w $BDT_HOME/deploy/workspace.yaml`.

Ctrl-C or SIGTERM stops everything in reverse order (SIGTERM, then SIGKILL after
--stop-timeout seconds; a second Ctrl-C kills at once) and then the private PostgreSQL.
Exit 0 after a clean stop, 1 when a process would not start or died (named, with its log),
2 when PostgreSQL cannot be started or an option is wrong."""


def cmd_deploy_local(args: argparse.Namespace, settings: Settings) -> int:
    from bdt_platform.ops import deploy_local

    pg_url = _dagster_pg_url(args.pg_url) if args.pg_url else None
    ports = [args.port, args.grpc_port] + ([args.pg_port] if args.pg_port else [])
    if len(set(ports)) != len(ports) or not all(0 < p < 65536 for p in ports):
        return _refuse("deploy-local", "--port, --grpc-port and --pg-port must be different "
                       "port numbers")
    return deploy_local.run(settings, echo=_echo, port=args.port, host=args.host,
                            grpc_port=args.grpc_port, pg_url=pg_url,
                            pg_dir=Path(args.pg_dir).absolute() if args.pg_dir else None,
                            pg_port=args.pg_port, start_timeout=args.start_timeout,
                            stop_timeout=args.stop_timeout)


def add_parser(commands) -> None:
    deploy = commands.add_parser(
        "deploy-local", help="run PostgreSQL, the code server, dagster-daemon and "
        "dagster-webserver as separate processes until Ctrl-C",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    deploy.add_argument("--port", type=int, default=3000, help="the UI's port (default 3000)")
    deploy.add_argument("--host", default="127.0.0.1",
                        help="the address the UI and the code server listen on "
                             "(default 127.0.0.1)")
    deploy.add_argument("--grpc-port", dest="grpc_port", type=int, default=4000,
                        help="the code server's gRPC port (default 4000, as in the Helm values)")
    deploy.add_argument("--pg-url", dest="pg_url", metavar="URL",
                        help="a PostgreSQL server that already runs (default: "
                             "$BDT_DAGSTER_PG_URL; prefer the variable, a URL here shows in ps)")
    deploy.add_argument("--pg-dir", dest="pg_dir", metavar="DIR",
                        help="the private PostgreSQL's folder (default $BDT_HOME/postgres; as "
                             "root it must be reachable by the postgres user)")
    deploy.add_argument("--pg-port", dest="pg_port", type=int, default=None,
                        help="the private PostgreSQL's port (default: a free one)")
    deploy.add_argument("--start-timeout", dest="start_timeout", type=float, default=300.0,
                        metavar="SECONDS", help="how long the code server and the webserver "
                        "may take to answer (default 300)")
    deploy.add_argument("--stop-timeout", dest="stop_timeout", type=float, default=20.0,
                        metavar="SECONDS", help="how long each process may take to stop after "
                        "SIGTERM before SIGKILL (default 20)")
    deploy.set_defaults(handler=cmd_deploy_local)
