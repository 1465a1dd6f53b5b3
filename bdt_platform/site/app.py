"""The FastAPI application of the report site: state, middleware, error pages, routes.

``create_app(settings)`` builds everything once per process: the site database, the session
signer, the metric layer (snapshot), the targets, and the Vega JavaScript (built in the
background at start-up, then served from memory). The routes live in ``pages.py`` (HTML) and
``api.py`` (JSON and CSV).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from bdt_platform.core.settings import Settings, site_secret
from bdt_platform.site import usage
from bdt_platform.site.charts import format_value
from bdt_platform.site.auth import Forbidden, NotSignedIn, Sessions, Throttle
from bdt_platform.site.data import NoData, SiteData
from bdt_platform.site.embed import EmbedError
from bdt_platform.site.scope import BadRequest, NotFound
from bdt_platform.site.store import SiteStore

HERE = Path(__file__).resolve().parent
#: Paths whose answers are JSON (401/403/400 as JSON, never a redirect).
MACHINE_PREFIXES = ("/api/", "/download/")

class VegaBundle:
    """Vega + Vega-Lite + vega-embed (``vl_convert.javascript_bundle()``), built once in a
    background thread when the app starts (about 2 s) and then served from memory."""

    def __init__(self):
        self._text: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._build, name="bdt-vega-bundle", daemon=True).start()

    def _build(self) -> None:
        import vl_convert

        try:
            self._text = vl_convert.javascript_bundle()
        finally:
            self._ready.set()

    def text(self) -> str:
        self._ready.wait()
        if self._text is None:
            raise RuntimeError("the Vega JavaScript bundle could not be built")
        return self._text


@dataclass
class Site:
    """Everything a request handler needs (``request.app.state.site``)."""

    settings: Settings
    secret: str
    store: SiteStore
    sessions: Sessions
    throttle: Throttle
    data: SiteData
    templates: Jinja2Templates
    vega: VegaBundle
    _targets: object = None
    _explain: tuple | None = None
    _explain_lock: threading.Lock = field(default_factory=threading.Lock)

    def targets(self):
        """The KPI targets, read and checked on first use (``targets.py``)."""
        if self._targets is None:
            from bdt_platform.site.targets import load_targets

            known = {m.name: m for m in self.data.metrics()}
            self._targets = load_targets(self.settings.site_targets_path, known)
        return self._targets

    def explain_runtime(self):
        """(Dagster instance, asset graph, lake) for "why did it change", built on first use:
        the definitions import dbt, which the other pages never need."""
        with self._explain_lock:
            if self._explain is None:
                from bdt_platform.cli.common import _quiet_dagster
                from bdt_platform.core.runs import instance_for
                from bdt_platform.definitions import build_definitions

                _quiet_dagster()
                defs = build_definitions(self.settings)
                self._explain = (instance_for(self.settings), defs.resolve_asset_graph(),
                                 defs.resources["lake"])
            return self._explain


def _machine(request: Request) -> bool:
    return request.url.path.startswith(MACHINE_PREFIXES)


def _error(request: Request, status: int, message: str) -> Response:
    if _machine(request):
        return JSONResponse({"error": message}, status_code=status)
    site: Site = request.app.state.site
    return site.templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None,
                                "csrf": "", "embed": False}, status_code=status)


def create_app(settings: Settings) -> FastAPI:
    """The report site for ``settings``' home. Prod requires BDT_SITE_SECRET."""
    secret = site_secret(settings)
    store = SiteStore(settings.site_dir)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["fmt"] = format_value
    templates.env.filters["q"] = lambda value: quote(str(value), safe="")
    site = Site(settings=settings, secret=secret, store=store, sessions=Sessions(secret),
                throttle=Throttle(store), data=SiteData(settings), templates=templates,
                vega=VegaBundle())
    app = FastAPI(title="bdt report site", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.site = site

    @app.middleware("http")
    async def record_usage(request: Request, call_next):
        started = time.perf_counter()
        request.state.view = usage.View(kind=_kind(request.url.path))
        response = await call_next(request)
        headers = response.headers
        if "content-security-policy" not in headers:
            headers["Content-Security-Policy"] = "frame-ancestors 'none'"
            headers["X-Frame-Options"] = "DENY"
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.startswith("/static/") and request.url.path != "/favicon.ico":
            user = getattr(request.state, "user", None)
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            try:
                usage.record(store, username=user.username if user else None, path=path,
                             view=request.state.view, status=response.status_code,
                             ms=(time.perf_counter() - started) * 1000)
            except Exception:  # noqa: BLE001 - a usage row must never fail the answer
                import logging

                logging.getLogger("bdt.site").exception("could not record usage for %s", path)
        return response

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn):
        if _machine(request):
            return JSONResponse({"error": f"{exc}: POST /login with username and password "
                                          "first"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        return _error(request, 403, str(exc))

    @app.exception_handler(EmbedError)
    async def embed_refused(request: Request, exc: EmbedError):
        return _error(request, 403, str(exc))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return _error(request, 400, str(exc))

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound):
        return _error(request, 404, str(exc))

    @app.exception_handler(NoData)
    async def no_data(request: Request, exc: NoData):
        return _error(request, 503, str(exc))

    @app.get("/static/vega.js", include_in_schema=False)
    def vega_js() -> Response:
        return Response(site.vega.text(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from bdt_platform.site import api, pages

    app.include_router(pages.router)
    app.include_router(api.router)
    return app


def _kind(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/download/"):
        return "download"
    if path.startswith("/embed/"):
        return "embed"
    if path in ("/login", "/logout"):
        return "auth"
    return "page"
