"""The Ingress serves mp3converter.com over TLS only, with the certificate `make tls-cert` makes, and does not
route the gateway's internal endpoints (/metrics, /readyz) from outside."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.k8s.support import OVERLAYS, ROOT, Doc, run

pytestmark = pytest.mark.k8s

HOST = "mp3converter.com"
SECRET = "mp3converter-tls"
INTERNAL = ("/metrics", "/readyz")  # gateway routes for Prometheus and the kubelet, never for the public
NGINX = "nginx.ingress.kubernetes.io/"


def ingresses(docs: list[Doc]) -> list[Doc]:
    found = [d for d in docs if d["kind"] == "Ingress"]
    assert found, "no Ingress rendered"
    return found


def gateway_routes() -> set[str]:
    """The gateway's URL rules (`@bp.get("/jobs/<job_id>")` -> /jobs/x), read from its source."""
    source = "\n".join(p.read_text() for p in (ROOT / "gateway" / "gateway").glob("*.py"))
    rules = re.findall(r'@bp\.(?:get|post|put|patch|delete|route)\(\s*"(/[^"]*)"', source)
    return {re.sub(r"<[^>]+>", "x", rule) for rule in rules}


def location(docs: list[Doc], uri: str) -> tuple[Doc, Doc] | None:
    """(Ingress, path) that ingress-nginx picks for https://mp3converter.com<uri>: an Exact path equal to the
    URI, else the longest Prefix path covering it (element-wise, as Kubernetes defines Prefix), else none."""
    exact, prefix = [], []
    for ingress in ingresses(docs):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host") != HOST:
                continue
            for path in rule["http"]["paths"]:
                p = path["path"]
                if path["pathType"] == "Exact" and uri == p:
                    exact.append((ingress, path))
                elif path["pathType"] in ("Prefix", "ImplementationSpecific"):
                    base = p.rstrip("/")
                    if uri == base or uri.startswith(base + "/"):
                        prefix.append((len(base), ingress, path))
    if exact:
        return exact[0]
    if prefix:
        _, ingress, path = max(prefix, key=lambda found: found[0])
        return ingress, path
    return None


def denies_everyone(ingress: Doc) -> bool:
    ranges = ingress["metadata"].get("annotations", {}).get(NGINX + "denylist-source-range", "")
    networks = [ipaddress.ip_network(r.strip()) for r in ranges.split(",") if r.strip()]
    return {n.version for n in networks if n.prefixlen == 0} == {4, 6}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_ingress_serves_its_hosts_over_tls_only_with_the_made_certificate(docs_of, overlay):
    for ingress in ingresses(docs_of(overlay)):
        name, spec = ingress["metadata"]["name"], ingress["spec"]
        hosts = {rule["host"] for rule in spec["rules"]}
        assert hosts == {HOST}, f"{name}: every rule names the host the certificate is for"
        assert [(sorted(t["hosts"]), t["secretName"]) for t in spec.get("tls", [])] == [([HOST], SECRET)], name
        annotations = ingress["metadata"]["annotations"]
        assert annotations[NGINX + "ssl-redirect"] == annotations[NGINX + "force-ssl-redirect"] == "true", name
        assert not any("snippet" in key for key in annotations), f"{name}: no configuration snippets"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_tls_key_is_never_in_the_manifests(docs_of, overlay):
    assert not [d for d in docs_of(overlay) if d["kind"] == "Secret" and d["metadata"]["name"] == SECRET]


def test_the_gateway_still_serves_the_internal_routes_the_ingress_refuses():
    # If the gateway moves them (e.g. to a port of their own), this test and the gateway-internal Ingress go.
    assert set(INTERNAL) <= gateway_routes()


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("uri", [f"{p}{suffix}" for p in INTERNAL for suffix in ("", "/", "/x")])
def test_internal_endpoints_are_refused_at_the_ingress(docs_of, overlay, uri):
    found = location(docs_of(overlay), uri)
    assert found is not None and denies_everyone(found[0]), f"https://{HOST}{uri} reaches the gateway"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_public_gateway_route_is_reachable(docs_of, overlay):
    public = gateway_routes() - set(INTERNAL)
    assert {"/login", "/upload", "/download", "/healthz"} <= public
    for uri in sorted(public):
        found = location(docs_of(overlay), uri)
        assert found is not None, f"https://{HOST}{uri} is not routed"
        ingress, path = found
        assert not denies_everyone(ingress), f"https://{HOST}{uri} is refused"
        assert path["backend"]["service"]["name"] == "gateway"


def test_the_route_model_picks_the_longest_prefix_and_exact_first():
    def ingress(name, *paths, deny=False):
        annotations = {NGINX + "denylist-source-range": "0.0.0.0/0,::/0"} if deny else {}
        return {"kind": "Ingress", "metadata": {"name": name, "annotations": annotations},
                "spec": {"rules": [{"host": HOST, "http": {"paths": [
                    {"path": p, "pathType": t, "backend": {"service": {"name": "gateway"}}} for p, t in paths]}}]}}

    docs = [ingress("public", ("/", "Prefix"), ("/metricsx", "Exact")), ingress("internal", ("/metrics", "Prefix"),
                                                                          deny=True)]
    assert location(docs, "/metrics/a")[0]["metadata"]["name"] == "internal"
    assert location(docs, "/metricsx")[0]["metadata"]["name"] == "public"
    assert location(docs, "/metricsy")[0]["metadata"]["name"] == "public"  # element-wise, not string prefix
    v4_only = {"metadata": {"annotations": {NGINX + "denylist-source-range": "0.0.0.0/0"}}}
    assert denies_everyone(docs[1]) and not denies_everyone(v4_only) and not denies_everyone(docs[0])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_public_url_is_the_https_ingress_host(docs_of, overlay):
    urls = {d["metadata"]["name"]: d["data"]["PUBLIC_URL"] for d in docs_of(overlay)
            if d["kind"] == "ConfigMap" and "PUBLIC_URL" in d.get("data", {})}
    assert urls and all(urlsplit(url)[:2] == ("https", HOST) for url in urls.values()), urls


def test_the_script_and_the_makefile_make_the_secret_the_ingress_names():
    script = (ROOT / "scripts" / "tls.sh").read_text()
    assert f'SECRET="{SECRET}"' in script and f'HOST="${{TLS_HOST:-{HOST}}}"' in script
    makefile = (ROOT / "Makefile").read_text()
    deploy = re.search(r"^deploy:.*\n((?:\t.*\n)+)", makefile, re.M).group(1).splitlines()
    assert deploy.index("\tscripts/tls.sh secret") < deploy.index("\tkubectl apply -k $(OVERLAY)")
    assert re.search(r"^tls-cert:.*\n\tscripts/tls.sh cert$", makefile, re.M)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """What `make tls-cert` makes, in a state folder of the test's own."""
    state = tmp_path_factory.mktemp("state")
    proc = _tls_sh(state, "cert")
    assert proc.returncode == 0, proc.stderr
    return state / "tls"


def _tls_sh(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "scripts" / "tls.sh"), *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "STATE_DIR": str(state)})


def _handshake(tls: Path, server_name: str) -> Callable[[], None]:
    """TLS handshake with a server holding the made certificate; the client trusts only the made CA."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls / f"{HOST}.crt", tls / f"{HOST}.key")
    client_ctx = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_name) as conn:
                conn.sendall(b"x")
    finally:
        thread.join(10)
        listener.close()


def test_the_made_certificate_is_trusted_through_the_made_ca_for_the_host_only(made):
    _handshake(made, HOST)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(made, "example.com")
    assert (made / "ca.key").stat().st_mode & 0o077 == 0 and (made / f"{HOST}.key").stat().st_mode & 0o077 == 0


def test_the_ca_can_vouch_for_nothing_but_the_host(made, tmp_path):
    """Name-constrained: a certificate it signs for another name fails verification, should its key leak."""
    other = ["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=example.com",
             "-addext", "subjectAltName=DNS:example.com", "-CA", str(made / "ca.crt"), "-CAkey", str(made / "ca.key"),
             "-keyout", str(tmp_path / "o.key"), "-out", str(tmp_path / "o.crt")]
    assert run(other).returncode == 0
    verify = run(["openssl", "verify", "-CAfile", str(made / "ca.crt"), str(tmp_path / "o.crt")])
    assert verify.returncode != 0 and "permitted subtree violation" in verify.stdout + verify.stderr


@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::7"])
def test_the_ca_cannot_vouch_for_an_ip_address(made, tmp_path, address):
    """A DNS-only constraint leaves IP addresses unconstrained (RFC 5280): they are excluded explicitly."""
    other = ["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=mp3converter.com",
             "-addext", f"subjectAltName=DNS:{HOST},IP:{address}", "-CA", str(made / "ca.crt"),
             "-CAkey", str(made / "ca.key"), "-keyout", str(tmp_path / "o.key"), "-out", str(tmp_path / "o.crt")]
    assert run(other).returncode == 0
    verify = run(["openssl", "verify", "-CAfile", str(made / "ca.crt"), str(tmp_path / "o.crt")])
    assert verify.returncode != 0 and "excluded subtree violation" in verify.stdout + verify.stderr


def test_tls_cert_is_idempotent(made):
    before = {p.name: p.read_bytes() for p in made.iterdir()}
    assert _tls_sh(made.parent, "cert").returncode == 0
    assert {p.name: p.read_bytes() for p in made.iterdir()} == before
