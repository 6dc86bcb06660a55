"""The bearer token over HTTP: ``Authorization: Bearer <token>`` on every request but health and the
login page's own files, or the dashboard's session cookie, which the login form sets.

The cookie holds an HMAC of the token (never the token), is HttpOnly, SameSite=Strict (no other site's
page can send it, so a form elsewhere cannot make a logged-in browser call us) and Secure under TLS. A
page request without either is sent to the login form; any other request answers 401 with a JSON error.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from aiohttp import web

from reuse.errors import Unauthenticated
from reuse.http.context import HttpContext

COOKIE = "reuse_session"
# Routes (by name) open without the token: health (probes), the login form, and the dashboard's own files.
# Decided by the route the request matched, not by its path text, so no spelling of a path reaches
# another route through them.
OPEN_ROUTES = frozenset({"health-live", "health-ready", "login", "login-submit", "static"})


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"reuse dashboard session", hashlib.sha256).hexdigest()


def check_request(request: web.Request, token: str | None) -> None:
    """Raise Unauthenticated unless the request carries the token (or no token is set)."""
    if token is None:
        return
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return
        raise Unauthenticated("invalid bearer token")
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return
    raise Unauthenticated("missing bearer token: send the header 'Authorization: Bearer <token>'")


def is_open(request: web.Request) -> bool:
    return request.match_info.route.name in OPEN_ROUTES


def wants_page(request: web.Request) -> bool:
    """A dashboard page a browser asked for (not the REST API, not the dashboard's JSON)."""
    p = request.path
    return (
        request.method in ("GET", "HEAD")
        and (p == "/" or p.startswith("/ui/"))
        and not p.startswith("/ui/api/")
    )


@web.middleware
async def token_gate(request: web.Request, handler):  # noqa: ANN201 - aiohttp's middleware signature
    ctx = HttpContext.of(request)
    if ctx.token is not None and not is_open(request):
        try:
            check_request(request, ctx.token)
        except Unauthenticated:
            if wants_page(request):
                raise web.HTTPSeeOther(f"/ui/login?next={quote(request.path_qs, safe='/')}") from None
            raise
    return await handler(request)


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this server only (never //host or a scheme)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\n" in target:
        return "/ui/"
    return target
