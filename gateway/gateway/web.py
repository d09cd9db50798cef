"""HTTP entrypoint for people without curl: the web page at / and its static files under /web/."""

from __future__ import annotations

from flask import Blueprint, Response

# Flask's own static serving (send_from_directory: safe_join refuses '..', absolute and drive paths with 404;
# ETag, Last-Modified and conditional 304s included), for the files in gateway/web/ only.
bp = Blueprint("web", __name__, static_folder="web", static_url_path="/web")

# Strict: the page loads only its own files and talks only to its own origin. No inline script or style
# (the page has none), no plugins, no framing, no <base> games, forms post nowhere, and Trusted Types make
# the browser itself refuse every HTML-string sink (innerHTML and friends), so a file name or an error can
# only ever be inserted as text.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'none'",
        "media-src 'none'",
        "object-src 'none'",
        "worker-src 'none'",
        "frame-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}
# The files' names carry no content hash, so the browser revalidates each one (ETag -> 304) on every load:
# a deploy never leaves a new page running an old script. Never stored by shared caches: errors are private.
CACHE_CONTROL = "no-cache"


@bp.get("/")
def index() -> Response:
    return bp.send_static_file("index.html")


@bp.after_request
def security_headers(response: Response) -> Response:
    """Every answer of this blueprint (page, assets and their 404s) carries the policy."""
    response.headers.update(SECURITY_HEADERS)
    if response.status_code in (200, 304):
        response.headers["Cache-Control"] = CACHE_CONTROL
    else:
        response.headers["Cache-Control"] = "no-store"
    return response


def _content(description: str, content: dict) -> dict:
    return {"description": description, "content": content}


# The page's two operations in the gateway's OpenAPI document (gateway/openapi.py merges them in).
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
OPENAPI_PATHS: dict = {
    "/": {
        "get": {
            "summary": "The web page: log in, upload with progress, the job list, download and delete.",
            "operationId": "webPage",
            "security": [],
            "responses": {
                "200": _content("The page (HTML).", {"text/html": {"schema": {"type": "string"}}}),
                "304": {"description": "Not modified since the ETag or date the client sent."},
            },
        }
    },
    "/web/{filename}": {
        "get": {
            "summary": "The web page's static files (script, style sheet, icon).",
            "operationId": "webAsset",
            "security": [],
            "parameters": [
                {
                    "name": "filename",
                    "in": "path",
                    "required": True,
                    "description": "A file of the page, e.g. app.js; anything else (a '..' included) is 404.",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": _content(
                    "The file.",
                    {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "image/svg+xml": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                ),
                "304": {"description": "Not modified since the ETag or date the client sent."},
                "404": {"description": "No such file.", "content": _ERROR},
            },
        }
    },
}
