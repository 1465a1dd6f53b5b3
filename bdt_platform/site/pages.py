"""The HTML pages: sign-in, scorecard, state, metric, drill-down, explain, explore, usage, the
admin's embedded links, and ``/embed/<token>``. What they show is built in ``views.py``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from bdt_platform.site import embed as embeds
from bdt_platform.site import usage, views
from bdt_platform.site.auth import (LOGIN_COOKIE, SESSION_COOKIE, SESSION_HOURS, WRONG_PASSWORD,
                                    Forbidden, check_csrf, current_user, origin_allowed,
                                    require_admin, same_token)
from bdt_platform.site.scope import BadRequest, check_state, parse_month
from bdt_platform.site.users import User, authenticate

router = APIRouter()


def _site(request: Request):
    return request.app.state.site


def _user(request: Request) -> User:
    """The signed-in user, with the metric layer refreshed for this request."""
    user = current_user(request)
    _site(request).data.refresh()
    return user


def render(request: Request, template: str, context: dict, status: int = 200,
           embed: bool = False) -> HTMLResponse:
    user = getattr(request.state, "user", None)
    context = {"user": user, "csrf": getattr(request.state, "csrf", ""), "embed": embed,
               "path": request.url.path, **context}
    return _site(request).templates.TemplateResponse(request, template, context,
                                                     status_code=status)


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# --- sign-in -------------------------------------------------------------------------------

@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/"):
    site = _site(request)
    cookie, token = site.sessions.new_login_token()
    response = render(request, "login.html", {"next": _safe_next(next), "login_csrf": token,
                                              "error": None,
                                              "proxy": site.settings.site_identity_header})
    response.set_cookie(LOGIN_COOKIE, cookie, max_age=3600, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


@router.post("/login")
async def login(request: Request):
    site = _site(request)
    form = await request.form()
    username = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    target = _safe_next(str(form.get("next") or "/"))
    # CSRF: a browser's form carries the token of its bdt_login cookie; a script sends no
    # cookie and no Origin. A cross-site form has an Origin (and, SameSite=Lax, no cookie).
    if not origin_allowed(request):
        raise Forbidden("sign-in from another site's page is refused (Origin does not match)")
    if request.cookies:
        expected = site.sessions.read_login_token(request.cookies.get(LOGIN_COOKIE))
        session = site.sessions.read_session(request.cookies.get(SESSION_COOKIE))
        if not (same_token(form.get("csrf"), expected)
                or (session and same_token(form.get("csrf"), session[1]))):
            raise Forbidden("missing or invalid CSRF token: reload the sign-in page and try again")
    address = request.client.host if request.client else "unknown"
    if site.throttle.blocked(username, address):
        return _login_failed(request, 429, "too many failed sign-ins: wait 5 minutes and try "
                             "again", target)
    user = authenticate(site.store, username, password) if username else None
    if user is None:
        site.throttle.failed(username, address)
        return _login_failed(request, 401, WRONG_PASSWORD, target)
    site.throttle.succeeded(username)
    cookie, _ = site.sessions.new_session(user.username)
    request.state.user = user
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_HOURS * 3600, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https")
    response.delete_cookie(LOGIN_COOKIE)
    return response


def _login_failed(request: Request, status: int, message: str, target: str) -> HTMLResponse:
    """The sign-in form again with the reason. It keeps the sign-in cookie the request came
    with (a browser) and sets none for a request that had none (a script): its next attempt
    is then cookie-less again, and checked by Origin."""
    site = _site(request)
    token = site.sessions.read_login_token(request.cookies.get(LOGIN_COOKIE)) or ""
    return render(request, "login.html", {"next": target, "login_csrf": token,
                                          "error": message, "proxy": None}, status=status)


@router.post("/logout")
async def logout(request: Request):
    await check_csrf(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- report pages --------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
def scorecard(request: Request, month: str | None = None, sort: str | None = None,
              dir: str | None = None):
    user = _user(request)
    return render(request, "scorecard.html",
                  views.scorecard(request, _site(request), user, month, sort, dir))


@router.get("/states/{state}", response_class=HTMLResponse)
def state_page(request: Request, state: str, month: str | None = None):
    user = _user(request)
    return render(request, "state.html",
                  views.state_page(request, _site(request), user, state, month))


@router.get("/metrics", response_class=HTMLResponse)
def metric_list(request: Request):
    _user(request)
    return render(request, "metrics.html", {"metrics": _site(request).data.metrics()})


@router.get("/metrics/{name}", response_class=HTMLResponse)
def metric_page(request: Request, name: str, states: str | None = None,
                months: str | None = None):
    user = _user(request)
    return render(request, "metric.html",
                  views.metric_page(request, _site(request), user, name, states, months))


@router.get("/records/{name}", response_class=HTMLResponse)
def records_page(request: Request, name: str, state: str | None = None,
                 month: str | None = None):
    user = _user(request)
    return render(request, "records.html",
                  views.records_page(request, _site(request), user, name, state, month))


@router.get("/explain", response_class=HTMLResponse)
def explain_page(request: Request, state: str | None = None, month: str | None = None):
    """Why did reports.outcomes change for this state x month: the explain engine's result."""
    from markdown_it import MarkdownIt

    from bdt_platform.explain.engine import ExplainError, explain
    from bdt_platform.explain.render import to_markdown

    user = _user(request)
    state = check_state(user, state)
    month = parse_month(month)
    request.state.view.states = state
    instance, graph, lake = _site(request).explain_runtime()
    html, message = None, None
    try:
        explanation = explain(instance, graph, lake, "reports.outcomes", state, month)
        html = MarkdownIt("commonmark", {"html": False}).enable("table").render(
            to_markdown(explanation))
        request.state.view.rows = len(explanation.metrics)
    except ExplainError as exc:
        message = str(exc)
    return render(request, "explain.html", {"state": state, "month": month, "html": html,
                                            "message": message})


@router.get("/explore", response_class=HTMLResponse)
def explore_page(request: Request, metrics: str | None = None, by: str | None = None,
                 states: str | None = None, months: str | None = None):
    user = _user(request)
    query = views.ExploreQuery.parse(metrics, by, states, months)
    return render(request, "explore.html", views.explore(request, _site(request), user, query))


# --- admin ---------------------------------------------------------------------------------

@router.get("/usage", response_class=HTMLResponse)
def usage_page(request: Request, weeks: int = 8):
    user = current_user(request)
    require_admin(user)
    summary = usage.weekly_summary(_site(request).store, weeks=max(1, min(weeks, 104)))
    request.state.view.rows = sum(len(v) for v in summary.values())
    return render(request, "usage.html", {"summary": summary, "weeks": weeks})


@router.get("/admin/embed", response_class=HTMLResponse)
def embed_form(request: Request):
    require_admin(current_user(request))
    return render(request, "embed_admin.html", {"link": None, "error": None, "form": {}})


@router.post("/admin/embed", response_class=HTMLResponse)
async def embed_create(request: Request):
    form = await check_csrf(request)
    user = current_user(request)
    require_admin(user)
    site = _site(request)
    try:
        hours = float(form.get("hours") or 24)
        token = embeds.make_token(
            site.secret, str(form.get("page") or "/"),
            [s for s in str(form.get("states") or "").split(",") if s.strip()],
            hours * 3600, user.username,
            str(form.get("frame_ancestors") or "*").split())
    except (ValueError, embeds.EmbedError) as exc:
        return render(request, "embed_admin.html", {"link": None, "error": str(exc),
                                                    "form": form}, status=400)
    link = str(request.base_url).rstrip("/") + f"/embed/{token}"
    return render(request, "embed_admin.html", {"link": link, "error": None, "form": form,
                                                "hours": hours})


@router.get("/embed/{token}", response_class=HTMLResponse)
def embedded(request: Request, token: str):
    """One page for the link's states, without sign-in, frameable by its ancestors."""
    site = _site(request)
    link = embeds.read_token(site.secret, token)
    viewer = User(f"embed:{link.created_by}", "partner", link.states)
    request.state.user = viewer
    site.data.refresh()
    if link.page == "/":
        response = render(request, "scorecard.html",
                          views.scorecard(request, site, viewer), embed=True)
    elif link.page.startswith("/states/"):
        response = render(request, "state.html",
                          views.state_page(request, site, viewer, link.page.rsplit("/", 1)[1]),
                          embed=True)
    else:
        response = render(request, "metric.html",
                          views.metric_page(request, site, viewer, link.page.rsplit("/", 1)[1],
                                            None, None), embed=True)
    response.headers["Content-Security-Policy"] = (
        f"frame-ancestors {' '.join(link.frame_ancestors)}")
    response.headers["Cache-Control"] = "private, no-store"
    request.state.view.kind = "embed"
    return response
