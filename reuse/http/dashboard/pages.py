"""The read-only dashboard: server-rendered pages (Jinja2, every value escaped), the vendored scripts that
draw its charts and run the "try it" panel, and the login form when a token is set.

Pages: ``/ui/`` models (with search), ``/ui/models/NAME`` versions, ``/ui/models/NAME/versions/V`` one
version, ``/ui/advice`` the advisor's tables, ``/ui/rank`` ``rank`` results, ``/ui/jobs`` jobs with
progress (and ``/ui/api/jobs``, their JSON, which the page polls). Files under ``/ui/static/`` only,
never a folder listing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from aiohttp import web

import reuse
from reuse.errors import Unauthenticated
from reuse.http.auth import COOKIE, check_request, safe_next, session_value
from reuse.http.body import read_small
from reuse.http.context import HttpContext
from reuse.http.dashboard import views
from reuse.serving.v2 import model_ref
from reuse.text import cut

HERE = Path(__file__).resolve().parent.parent
STATIC = HERE / "static"
ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _size(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _number(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "-" if x is None else str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.4g}"


ENV.filters.update(
    size=_size,
    number=_number,
    when=lambda t: (t or "")[:19].replace("T", " "),
    cut=lambda t, n=120: cut(str(t or ""), n),
    pretty=lambda d: json.dumps(d, indent=1, default=str),
)


def _authorized(request: web.Request, token: str | None) -> bool:
    try:
        check_request(request, token)
    except Unauthenticated:
        return False
    return True


def _page(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    ctx = HttpContext.of(request)
    shown = _authorized(request, ctx.token)  # the login page and errors before it name no store or address
    html = ENV.get_template(template).render(
        version=reuse.__version__,
        store=str(ctx.service.store_root) if shown else None,
        grpc_target=ctx.grpc_target if shown else None,
        logged_in=ctx.token is not None and COOKIE in request.cookies and shown,
        path=request.path,
        **values,
    )
    return web.Response(text=html, content_type="text/html", status=status)


async def _render(request: web.Request, template: str, view: Any, *args: Any) -> web.Response:
    """Read what ``view`` reads in the pool, then render ``template`` with it."""
    ctx = HttpContext.of(request)
    values = await ctx.in_pool(view, ctx.service, *args)
    return _page(request, template, **values)


def render_error(request: web.Request, status: int, message: str) -> web.Response:
    return _page(request, "error.html", status=status, status_code=status, message=message)


def render_login(request: web.Request, target: str, error: str = "", status: int = 200) -> web.Response:
    return _page(request, "login.html", status=status, target=target, error=error)


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")


async def models_page(request: web.Request) -> web.Response:
    return await _render(request, "models.html", views.models, request.query.get("q", ""))


async def model_page(request: web.Request) -> web.Response:
    return await _render(request, "model.html", views.model, request.match_info["name"])


async def version_page(request: web.Request) -> web.Response:
    name, number = request.match_info["name"], request.match_info["version"]
    number = model_ref(name, number).partition(":")[2]  # digits only, else 400
    return await _render(request, "version.html", views.version, name, number)


async def advice_page(request: web.Request) -> web.Response:
    ctx = HttpContext.of(request)
    return _page(request, "advice.html", runs=await ctx.in_pool(views.advice_runs, ctx.service))


async def rank_page(request: web.Request) -> web.Response:
    ctx = HttpContext.of(request)
    return _page(request, "rank.html", runs=await ctx.in_pool(views.rank_runs, ctx.service))


async def jobs_page(request: web.Request) -> web.Response:
    ctx = HttpContext.of(request)
    return _page(request, "jobs.html", jobs=await ctx.in_pool(views.jobs, ctx.service))


async def jobs_json(request: web.Request) -> web.Response:
    ctx = HttpContext.of(request)
    return web.json_response({"jobs": await ctx.in_pool(views.jobs, ctx.service)})


async def login_page(request: web.Request) -> web.StreamResponse:
    target = safe_next(request.query.get("next"))
    if HttpContext.of(request).token is None:
        raise web.HTTPSeeOther(target)
    return render_login(request, target)


async def login_submit(request: web.Request) -> web.StreamResponse:
    """The form's token, checked; a match sets the session cookie. Writes nothing to the store."""
    import hmac

    ctx = HttpContext.of(request)
    form = parse_qs((await read_small(request)).decode("utf-8", "replace"))
    target = safe_next((form.get("next") or [""])[0])
    if ctx.token is None:
        raise web.HTTPSeeOther(target)
    given = (form.get("token") or [""])[0].strip()
    if not hmac.compare_digest(given.encode(), ctx.token.encode()):
        return render_login(request, target, error="That is not this server's token.", status=401)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE, session_value(ctx.token), httponly=True, samesite="Strict", secure=ctx.tls, path="/"
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(COOKIE, path="/")
    raise response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/ui/", models_page)
    r.add_get("/ui/models/{name}", model_page)
    r.add_get("/ui/models/{name}/versions/{version}", version_page)
    r.add_get("/ui/advice", advice_page)
    r.add_get("/ui/rank", rank_page)
    r.add_get("/ui/jobs", jobs_page)
    r.add_get("/ui/api/jobs", jobs_json)
    r.add_get("/ui/login", login_page, name="login")
    r.add_post("/ui/login", login_submit, name="login-submit")
    r.add_get("/ui/logout", logout)
    r.add_static("/ui/static/", STATIC, show_index=False, follow_symlinks=False, name="static")
