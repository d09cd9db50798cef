"""The OpenAPI document and the Flask routes describe the same API, and it is served at /openapi.json."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from mp3core.contract import OPTION_NAMES

from gateway.jobs import job_view, new_job
from gateway.openapi import OPENAPI

# Flask adds these to every rule by itself; they are not part of the API.
AUTOMATIC = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def flask_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        assert rule.endpoint != "static", "the gateway has no static files"
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)  # /jobs/<job_id> -> /jobs/{job_id}
        routes |= {(path, method.lower()) for method in rule.methods - AUTOMATIC}
    return routes


def documented() -> set[tuple[str, str]]:
    return {(path, method) for path, item in OPENAPI["paths"].items() for method in item if method in HTTP_METHODS}


def operations():
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_every_route_is_documented(app):
    missing = flask_routes(app) - documented()
    assert not missing, f"routes without an OpenAPI operation: {sorted(missing)}"


def test_every_documented_operation_exists(app):
    extra = documented() - flask_routes(app)
    assert not extra, f"documented operations without a route: {sorted(extra)}"


def test_path_parameters_match_the_templates():
    for path, method, operation in operations():
        in_path = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert in_path == declared, (path, method)
        assert all(p["required"] for p in operation.get("parameters", []) if p["in"] == "path")


def test_operations_are_complete():
    operation_ids = []
    for path, method, operation in operations():
        operation_ids.append(operation["operationId"])
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), (path, method)
        for code, response in responses.items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", code), (path, method, code)
            assert response["description"]
            if int(code) >= 400:
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }, (path, method, code)
        secured = operation.get("security", OPENAPI["security"])
        if {"bearerAuth": []} in secured or {"basicAuth": []} in secured:
            assert "401" in responses and "503" in responses, (path, method)
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves():
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(OPENAPI))
    assert found
    for ref in found:
        target = OPENAPI
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def test_security_schemes_and_error_schema():
    assert OPENAPI["openapi"].startswith("3.1.")
    assert OPENAPI["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "basicAuth": {"type": "http", "scheme": "basic"},
    }
    error = OPENAPI["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(error["properties"]) == {"error", "field"}
    assert OPENAPI["paths"]["/login"]["post"]["security"] == [{"basicAuth": []}]


def test_job_schema_matches_the_job_view():
    view = job_view(new_job(job_id="a" * 32, owner="a@example.com", filename="a.mp4", video_fid="b" * 24, now=datetime.now(UTC)))
    schema = OPENAPI["components"]["schemas"]["Job"]
    assert set(schema["required"]) == set(schema["properties"]) == set(view)
    assert set(OPENAPI["components"]["schemas"]["Options"]["properties"]) == set(view["options"]) == set(OPTION_NAMES)


def test_upload_form_lists_the_file_and_every_option():
    form = OPENAPI["components"]["schemas"]["UploadForm"]
    assert set(form["properties"]) == {"file", *OPTION_NAMES}
    assert form["required"] == ["file"]
    assert form["additionalProperties"] is False


@pytest.mark.parametrize("text", ["0", "90", "90.5", "1:30", "00:01:30.500", " 7 ", "99:59:59.999", "-1", "1:60",
                                  "1.0001", "1e3", "", "soon"])
def test_the_documented_time_pattern_is_what_the_gateway_parses(text):
    from mp3core.errors import BadRequest

    from gateway.options import parse_time

    pattern = OPENAPI["components"]["schemas"]["UploadForm"]["properties"]["start"]["pattern"]
    try:
        parse_time("start", text)
        parsed = True
    except BadRequest:
        parsed = False
    assert (re.fullmatch(pattern.strip("^$"), text) is not None) == parsed


def test_every_option_has_a_description_and_new_ones_a_default():
    form = OPENAPI["components"]["schemas"]["UploadForm"]["properties"]
    for name in OPTION_NAMES:
        assert form[name]["description"], name
    assert {name: form[name].get("default") for name in ("start", "normalize", "cover")} == {
        "start": "0", "normalize": False, "cover": False}
    assert "Default: the end" in form["end"]["description"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer alice-token"}], ids=["anonymous", "with-token"])
def test_document_is_served_without_authentication(client, headers):
    response = client.get("/openapi.json", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == OPENAPI
