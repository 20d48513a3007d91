"""Every API route (and HeyDoc's /login, /register, /logout) answers the same with and
without its trailing slash, for every method, without a redirect: a redirected POST
comes back as a GET and loses its body.

The routes are read from Django's URL resolver, so a route added later is covered
without touching this file."""

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RoutePattern
from rest_framework.test import APIClient

from conftest import bearer_client

HEYDOC_ROUTES = {"login", "register", "logout"}
METHODS = ["get", "post", "put", "patch", "delete", "options"]
REDIRECTS = {301, 302, 303, 307, 308}

# A sample value per path converter, to turn a route into a URL that resolves.
_SAMPLES = ["0b0e5b1e-8f4d-4a57-9a57-3c0e5b8a9d11", "1", "+15551234567", "sample"]


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def _is_covered(route: str) -> bool:
    return route.startswith("api/") or route.rstrip("/") in HEYDOC_ROUTES


def covered_routes() -> list[str]:
    """The routes without their trailing slash, one per route."""
    return sorted({route.rstrip("/") for route, _ in _walk(get_resolver().url_patterns) if _is_covered(route)})


def _sample_url(route: str) -> str:
    """The route with each ``<converter:name>`` replaced by a value it accepts."""
    converters = RoutePattern(route).converters
    parts = route.split("<")
    url = parts[0]
    for part in parts[1:]:
        spec, rest = part.split(">", 1)
        name = spec.split(":")[-1]
        converter = converters[name]
        for candidate in _SAMPLES:
            try:
                converter.to_python(candidate)
            except (ValueError, TypeError):
                continue
            if re.fullmatch(converter.regex, candidate):
                url += candidate
                break
        else:
            raise AssertionError(f"no sample value for <{spec}> in {route}; add one to _SAMPLES")
        url += rest
    return "/" + url


ROUTES = covered_routes()


def test_the_route_list_is_built_from_the_resolver():
    # Guards the discovery itself: it must find the documented auth routes.
    for expected in ["api/auth/login", "api/auth/signup", "api/auth/me", "api/users", "login", "register", "logout"]:
        assert expected in ROUTES
    assert not any(route.endswith("/") for route in ROUTES)


def test_every_covered_route_is_a_path_route():
    # A re_path route would escape the sample-URL builder below.
    for route, pattern in _walk(get_resolver().url_patterns):
        if _is_covered(route):
            assert isinstance(pattern.pattern, RoutePattern), f"{route}: use heroshhi.api.api_path"


@pytest.mark.parametrize("route", ROUTES)
def test_both_variants_resolve_to_the_same_view(route):
    url = _sample_url(route)
    try:
        bare, slashed = resolve(url), resolve(url + "/")
    except Resolver404 as exc:
        pytest.fail(f"{route}: one variant does not resolve ({exc}); declare it with heroshhi.api.api_path")
    assert bare.func is slashed.func, route
    assert bare.kwargs == slashed.kwargs


def _clients(owner) -> dict[str, APIClient]:
    return {"anonymous": APIClient(), "bearer": bearer_client(owner)}


def _summary(response) -> tuple:
    """What a client compares: the status, and the machine code of an error."""
    code = None
    if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
        code = response.json().get("error")
    return response.status_code, code


@pytest.mark.django_db
@pytest.mark.parametrize("route", ROUTES)
def test_same_answer_with_and_without_trailing_slash(route, owner, settings):
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m", "standard": "1000/15m"}
    url = _sample_url(route)
    for who, client in _clients(owner).items():
        for method in METHODS:
            answers = []
            for variant in (url, url + "/"):
                body = "" if method in ("get", "options") else json.dumps({})
                response = client.generic(
                    method.upper(), variant, body, content_type="application/json", HTTP_ACCEPT="application/json"
                )
                assert response.status_code not in REDIRECTS, (
                    f"{method.upper()} {variant} as {who} redirects to {response.get('Location')}"
                )
                assert response.status_code < 500, (method, variant, who, response.content)
                answers.append(_summary(response))
            assert answers[0] == answers[1], f"{method.upper()} {url} as {who}: {answers[0]} vs {answers[1]} with /"


@pytest.mark.django_db
def test_a_post_with_slash_reaches_the_view_with_its_body(owner, password, settings):
    # The classic failure: APPEND_SLASH turns the POST into a GET and drops the body.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m"}
    for url in ("/api/auth/login", "/api/auth/login/"):
        response = APIClient().post(url, {"email": owner.email, "password": password}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["token"]
    for url in ("/login", "/login/"):
        response = APIClient().post(url, {"email": owner.email, "password": password}, format="json")
        assert response.status_code == 200, response.content
        assert response.json()["success"] is True
        assert "sessionid" in response.cookies
