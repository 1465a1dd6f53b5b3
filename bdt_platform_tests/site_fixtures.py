"""Shared by the report-site tests: a small built home, users, the site on a real port.

``built_home(root)`` generates PA and RI (adjacent: one build run) for 2023-03..2024-03 (so
the scorecard's "vs last year" has data), ingests and builds it, and adds three users. ``running
site``: the FastAPI app under uvicorn on 127.0.0.1 on a free port, in a thread of the test
process. ``resend``: a partner re-sends PA's 2024-03 outcomes file with corrections, and the
partition is ingested and built again (the explain page then has two materializations).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import httpx
import pandas as pd

from bdt_platform_tests.conftest import ingest_and_build, make_settings

STATES = ["PA", "RI"]
# Contiguous states and months: one build run (a rectangle), and 2024-03 has a last month and
# a same month last year.
MONTHS = [dt.date(2023 + (2 + i) // 12, (2 + i) % 12 + 1, 1) for i in range(13)]  # 2023-03..2024-03
LATEST = dt.date(2024, 3, 1)
USERS = {"ada": ("admin", None), "ann": ("analyst", None), "pat": ("partner", ["PA"])}
PASSWORD = "correct horse battery staple"
RESENT = "paagency_PA_202403_outcomes.csv"


@dataclass
class World:
    settings: object
    defs: object
    instance: object
    passwords: dict = field(default_factory=dict)

    def close(self) -> None:
        self.instance.dispose()


def built_home(root: Path, scale: float = 0.15) -> World:
    """Generate, ingest and build a small home under ``root``; add the test users."""
    from bdt_platform.core.runs import instance_for
    from bdt_platform.definitions import build_definitions
    from bdt_platform.site.store import SiteStore
    from bdt_platform.site.users import add_user
    from bdt_platform.synthetic import generate

    settings = make_settings(root / "home")
    generate(Path(settings.inbox), settings.casemgmt_sqlite_path, states=STATES, months=MONTHS,
             scale=scale, seed=7, pii_key=settings.pii_key)
    defs = build_definitions(settings)
    instance = instance_for(settings)
    ingested, built, lines = ingest_and_build(defs, instance)
    assert ingested.exit_code == 0 and built.exit_code == 0, "\n".join(lines)
    store = SiteStore(settings.site_dir)
    for name, (role, states) in USERS.items():
        add_user(store, name, role, PASSWORD, states)
    return World(settings, defs, instance, {name: PASSWORD for name in USERS})


def resend_outcomes(world: World) -> str:
    """Re-send PA 2024-03's outcomes file with two approvals turned into denials; ingest it and
    build that partition again. Returns the file's name."""
    from bdt_platform.inbox.ingest import ingest
    from bdt_platform.warehouse.build import build

    inbox = Path(world.settings.inbox)
    original = (inbox / "processed" / "paagency" / RESENT).read_text()
    frame = pd.read_csv(StringIO(original), dtype=str, keep_default_na=False)
    approved = frame.index[frame["decision"] == "approved"][:2]
    assert len(approved) == 2
    frame.loc[approved, "decision"] = "denied"
    frame.loc[approved, "monthly_benefit_usd"] = "0.00"
    path = inbox / "paagency" / RESENT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(frame.to_csv(index=False))
    future = time.time() + 5
    os.utime(path, (future, future))
    r = world.defs.resources
    assert ingest(world.defs, world.instance, r["inbox"], r["lake"], r["warehouse"],
                  r["casemgmt"], settle_seconds=0, echo=lambda _: None).exit_code == 0
    assert build(world.defs, world.instance, r["warehouse"], ["PA"], [LATEST],
                 echo=lambda _: None).exit_code == 0
    return RESENT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningSite:
    """The report site under uvicorn in a daemon thread; ``url`` is its base address."""

    def __init__(self, settings):
        import uvicorn

        from bdt_platform.site.app import create_app

        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="bdt-site", daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the report site did not start")
            time.sleep(0.02)

    @contextmanager
    def client(self, user: str | None = None, password: str = PASSWORD
               ) -> Iterator[httpx.Client]:
        """An httpx client of the site; signed in as ``user`` (a script's sign-in: POST /login
        with the two fields, no cookie, no token)."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            if user:
                response = client.post("/login", data={"username": user, "password": password})
                assert response.status_code == 303, response.text
            yield client

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def usage_rows(settings, path_prefix: str = "") -> list[dict]:
    from bdt_platform.site import usage
    from bdt_platform.site.store import SiteStore

    return [r for r in usage.rows(SiteStore(settings.site_dir))
            if r["path"].startswith(path_prefix)]


def clear_login_failures(settings) -> None:
    from bdt_platform.site.store import SiteStore

    with SiteStore(settings.site_dir).transaction() as con:
        con.execute("DELETE FROM login_failures")
