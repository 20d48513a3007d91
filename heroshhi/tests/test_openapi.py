"""The OpenAPI schema at /api/schema and Swagger UI at /api/docs: one entry per route
(no trailing-slash twins), the HeyDoc session routes, the error envelope; the docs
page runs from local assets only (no CDN: the CSP and offline use forbid one)."""

import re
from collections import Counter
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

OPENAPI_JSON = "application/vnd.oai.openapi+json"
HTTP_METHODS = {"get", "post", "put", "patch", "delete", "options", "head", "trace"}


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m", "standard": "1000/15m"}


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/api/schema?format=json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith(OPENAPI_JSON)
    return response.json()


def _routes(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern)


def auth_routes() -> set[str]:
    return {"/" + route.rstrip("/") for route in _routes(get_resolver().url_patterns) if route.startswith("api/auth/")}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("/api/schema?format=json", {}),
        ("/api/schema", {"HTTP_ACCEPT": OPENAPI_JSON}),
        ("/api/schema/", {"HTTP_ACCEPT": OPENAPI_JSON}),
    ],
)
def test_schema_is_served_as_json(client, url, headers):
    response = client.get(url, **headers)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(OPENAPI_JSON)
    body = response.json()
    assert body["openapi"].startswith("3.")
    assert body["info"]["title"]


@pytest.mark.django_db
def test_schema_needs_no_login(client):
    assert client.get("/api/schema?format=json").status_code == 200


def test_every_auth_route_is_listed_once(schema):
    routes = auth_routes()
    assert "/api/auth/login" in routes  # the discovery found the routes
    documented = {path for path in schema["paths"] if path.startswith("/api/auth/")}
    assert documented == routes
    for route in routes:
        assert route + "/" not in schema["paths"]


def test_the_documented_auth_routes_have_their_methods(schema):
    paths = schema["paths"]
    for route in ("login", "signup", "forgot-password", "reset-password", "verify-2fa"):
        assert set(paths[f"/api/auth/{route}"]) & HTTP_METHODS == {"post"}, route
    assert set(paths["/api/auth/me"]) & HTTP_METHODS == {"get"}


def test_no_path_ends_with_a_slash(schema):
    assert [path for path in schema["paths"] if path.endswith("/")] == []


def test_operation_ids_are_unique(schema):
    # A slash twin that slipped in would show up as a second operation.
    ids = [
        operation["operationId"]
        for item in schema["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]
    assert [i for i, n in Counter(ids).items() if n > 1] == []


def test_heydoc_session_routes_are_listed(schema):
    paths = schema["paths"]
    assert "post" in paths["/login"]
    assert "post" in paths["/register"]
    assert "get" in paths["/logout"]
    for route in ("/login/", "/register/", "/logout/"):
        assert route not in paths


def test_error_envelope_component(schema):
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert {"success", "message", "error"} <= set(envelope["properties"])
    assert {"success", "message", "error"} <= set(envelope.get("required", []))
    assert envelope["properties"]["success"]["type"] == "boolean"
    assert envelope["properties"]["message"]["type"] == "string"
    assert envelope["properties"]["error"]["type"] == "string"


def _response_schema_ref(response: dict) -> str:
    return response["content"]["application/json"]["schema"]["$ref"]


def test_login_documents_401_and_429_with_the_envelope(schema):
    responses = schema["paths"]["/api/auth/login"]["post"]["responses"]
    for status in ("400", "401", "429"):
        assert _response_schema_ref(responses[status]) == "#/components/schemas/ErrorEnvelope", status
    assert "200" in responses


def test_heydoc_login_documents_its_errors_with_the_envelope(schema):
    responses = schema["paths"]["/login"]["post"]["responses"]
    for status in ("400", "401", "429"):
        assert _response_schema_ref(responses[status]) == "#/components/schemas/ErrorEnvelope", status


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_auth_success_answers_document_success(schema):
    for path, item in schema["paths"].items():
        if not path.startswith("/api/auth/"):
            continue
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if status.startswith("2"):
                    body = _resolve(schema, response["content"]["application/json"]["schema"])
                    assert "success" in body["properties"], (method, path, status)


def test_every_ref_resolves(schema):
    text = repr(schema)
    refs = set(re.findall(r"'#/components/schemas/([^']+)'", text))
    assert refs
    assert refs <= set(schema["components"]["schemas"])


def test_protected_routes_declare_bearer_auth(schema):
    me = schema["paths"]["/api/auth/me"]["get"]
    schemes = schema["components"]["securitySchemes"]
    names = {name for requirement in me["security"] for name in requirement}
    assert any(schemes[name].get("scheme") == "bearer" for name in names if name in schemes)


# --- Swagger UI ---------------------------------------------------------------------------------


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", html)


@pytest.fixture
def docs_page(client, db) -> str:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    return response.content.decode()


@pytest.mark.django_db
def test_docs_answers_without_slash_too(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


def test_docs_page_uses_local_assets_only(docs_page):
    urls = _asset_urls(docs_page)
    assert urls, "the page references no script or stylesheet"
    assert any(url.startswith("/static/") and url.endswith(".js") for url in urls)
    assert any(url.startswith("/static/") and url.endswith(".css") for url in urls)
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, url
        assert url.startswith("/"), url
    assert not re.search(r"https?://", docs_page), re.findall(r"https?://\S+", docs_page)


def test_docs_page_has_no_inline_script(docs_page):
    # script-src 'self' would block it.
    for tag in re.findall(r"<script\b[^>]*>", docs_page):
        assert "src=" in tag, tag


@pytest.mark.django_db
def test_docs_assets_are_served(client, docs_page):
    for url in _asset_urls(docs_page):
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert body, url


@pytest.mark.django_db
def test_docs_script_points_to_the_local_schema(client, docs_page):
    scripts = [url for url in _asset_urls(docs_page) if not url.startswith("/static/")]
    assert scripts
    for url in scripts:
        response = client.get(url)
        assert response.status_code == 200
        text = response.content.decode()
        for found in re.findall(r"https?://[^\s\"'`)]+", text):
            assert urlsplit(found).hostname in {"testserver", None}, found
        assert "/api/schema" in text


def test_every_answer_shape_with_success_requires_it(schema):
    """Clients branch on `success`: every schema that has it must promise it."""
    shapes = {
        name: component
        for name, component in schema["components"]["schemas"].items()
        if "success" in component.get("properties", {})
    }

    assert {"ErrorEnvelope", "LoginOutput", "Success"} <= set(shapes)
    assert [name for name, component in shapes.items() if "success" not in component.get("required", [])] == []


def test_docs_page_has_no_inline_style_the_csp_would_block(client, db):
    page = client.get("/api/docs/")

    assert page.status_code == 200
    assert "<style" not in page.content.decode()
    assert "style-src 'self'" in page["Content-Security-Policy"]
