"""The HTTP application: the KServe v2 REST protocol (reuse.http.v2) and the read-only dashboard
(reuse.http.dashboard), behind the token gate, with one error mapping and the security headers.

Only GET and HEAD reach the dashboard; the only POSTs are inference and the login form, and neither writes
to the store (management stays on gRPC). Errors answer ``{"error": message}`` (a dashboard page: an
HTML page saying the same) with the status of reuse.http.status; aiohttp's own refusals (no such route,
a method not allowed, a request line or header over 8 KiB) keep their status and get the same body.
"""

from __future__ import annotations

import logging

from aiohttp import web

from reuse.http import v2
from reuse.http.auth import token_gate, wants_page
from reuse.http.body import BUDGET, Budget
from reuse.http.context import CONTEXT, HttpContext
from reuse.http.dashboard import pages
from reuse.http.status import http_error
from reuse.text import cut

log = logging.getLogger(__name__)
# Pages: scripts and styles from this server only (no inline script), no frames, forms post here only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Server": "reuse",
}


def _error(request: web.Request, status: int, message: str) -> web.Response:
    if wants_page(request):
        response = pages.render_error(request, status, message)
    else:
        response = v2.json_response({"error": message}, status=status)
    if status in (400, 413):
        response.force_close()  # the rest of a refused body is not read: end the connection instead
    return response


def _refusal(request: web.Request, exc: web.HTTPException) -> str:
    """What aiohttp's own refusals mean, in our words (they name no user value but the path, clipped)."""
    where = f"{request.method} {cut(request.path, 120)}"
    if isinstance(exc, web.HTTPNotFound):
        return f"no such page or endpoint: {where}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"method not allowed: {where}; allowed: {', '.join(sorted(exc.allowed_methods))}"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        cap = request.app[CONTEXT].limits.max_body_bytes
        return f"request body above the limit of {cap} bytes (--max-message-mb)"
    if isinstance(exc, web.HTTPForbidden) and request.path.startswith("/ui/static/"):
        return f"no listing of folders: {where}"
    return f"{exc.status} {exc.reason}: {where}"


@web.middleware
async def errors_and_headers(request: web.Request, handler):  # noqa: ANN201 - aiohttp's middleware signature
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc if exc.status < 400 else _error(request, exc.status, _refusal(request, exc))
    except Exception as exc:  # noqa: BLE001 - the one place errors become statuses
        response = _error(request, *http_error(exc, f"{request.method} {request.path}"))
    response.headers.update(HEADERS)
    if request.match_info.route.name == "static" and response.status == 200:
        response.headers.setdefault("Cache-Control", "public, max-age=3600")
    else:
        response.headers["Cache-Control"] = "no-store"
    if response.content_type == "text/html":
        response.headers["Content-Security-Policy"] = CSP
    return response


def make_app(ctx: HttpContext) -> web.Application:
    """The application of one server (``ctx``: its service, pool, limits and token)."""
    app = web.Application(
        middlewares=[errors_and_headers, token_gate], client_max_size=ctx.limits.max_body_bytes
    )
    app[CONTEXT] = ctx
    app[BUDGET] = Budget(ctx.limits.in_flight_bytes)
    v2.add_routes(app)
    pages.add_routes(app)
    return app
