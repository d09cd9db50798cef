"""The web page's files as the gateway serves them: security headers, caching, content types, no traversal."""

from __future__ import annotations

import re
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway import create_app
from gateway.config import Settings
from gateway.web import CONTENT_SECURITY_POLICY

WEB = Path(__file__).resolve().parents[2] / "gateway" / "gateway" / "web"
ASSETS = {
    "/": "text/html; charset=utf-8",
    "/web/app.js": "text/javascript; charset=utf-8",
    "/web/app.css": "text/css; charset=utf-8",
    "/web/icon.svg": "image/svg+xml; charset=utf-8",
}


@pytest.fixture(scope="module")
def client():
    # Adapters that are never called: serving static files touches none of them.
    unused = types.SimpleNamespace(count_by_status=dict)
    app = create_app(Settings.from_env({}), storage=unused, jobs=unused, publisher=unused, auth=unused)
    app.testing = True
    return app.test_client()


def test_the_policy_is_strict() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == directives["style-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["object-src"] == directives["base-uri"] == directives["frame-ancestors"] == "'none'"
    assert directives["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY and "data:" not in CONTENT_SECURITY_POLICY
    assert "*" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", sorted(ASSETS))
def test_page_and_assets_carry_the_security_headers(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == ASSETS[path]
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    # Revalidated on every load (the names carry no content hash), never stale after a deploy.
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["ETag"] and response.headers["Last-Modified"]
    again = client.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    "path",
    [
        "/web/../web.py",
        "/web/..%2fweb.py",
        "/web/%2e%2e/web.py",
        "/web/%2e%2e%2f%2e%2e%2fconfig.py",
        "/web/..%5cweb.py",
        "/web/%2fetc%2fpasswd",
        "/web/nothing.js",
        "/web/.",
    ],
)
def test_no_file_outside_the_web_folder(client, path: str) -> None:
    response = client.get(path, follow_redirects=True)
    assert response.status_code == 404
    assert response.is_json and response.json["error"]
    assert b"import" not in response.data and b"root:" not in response.data


def test_an_error_from_the_web_folder_is_not_cached(client) -> None:
    response = client.get("/web/nothing.js")
    assert response.status_code == 404
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.problems += [f"<{tag} {name}=...>" for name in names if name.startswith("on") or name == "style"]
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.problems.append("inline <script>")
            else:
                self.scripts.append(names["src"])
        if tag == "link" and names.get("rel") == "stylesheet":
            self.styles.append(names["href"])
        for name in ("src", "href", "action"):
            value = names.get(name) or ""
            if value and not value.startswith("/") or value.startswith("//") or value.lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}={value}> is not this origin's")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script text")


def test_the_page_has_nothing_inline_and_loads_only_its_own_files(client) -> None:
    page = _Page()
    page.feed(client.get("/").get_data(as_text=True))
    assert page.problems == []
    assert page.scripts == ["/web/app.js"] and page.styles == ["/web/app.css"]


def test_the_script_never_inserts_html() -> None:
    script = (WEB / "app.js").read_text()
    # Text only: every one of these would parse a string as HTML (or code).
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "setTimeout(\"", "createContextualFragment", "DOMParser"):
        assert sink not in script, sink
    assert re.search(r"\.textContent\s*=", script)
    # The token is kept in session storage only, never in local storage or a cookie.
    assert "localStorage" not in script and "document.cookie" not in script


def test_the_gateway_image_gets_the_web_folder() -> None:
    root = WEB.parents[2]
    # The image copies the whole package folder, and the build context lets it in.
    assert "COPY gateway/gateway/ /app/gateway/" in (root / "gateway" / "Dockerfile").read_text()
    assert "!gateway/gateway/" in (root / ".dockerignore").read_text().splitlines()
    assert {"index.html", "app.js", "app.css"} <= {path.name for path in WEB.iterdir()}
