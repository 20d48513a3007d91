"""Fixtures shared by every app's tests: a workspace with an admin ("owner") and
an agent, a second workspace ("outsider"), API clients logged in as each, and a
clean rate-limit counter for every test."""

import pytest
from django.core.cache import cache
from django.test import Client
from django_q.brokers import get_broker
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.factories import PASSWORD, AccountFactory, UserFactory
from tests.pages import logged_in


def clear_cache() -> None:
    # Redis: only this deployment's keys (KEY_PREFIX), never the whole database.
    if hasattr(cache, "delete_pattern"):
        cache.delete_pattern("*")
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_cache(request):
    """Rate-limit counters start at zero in every test that reaches the database
    (the embedded cache lives there, and transactional tests don't roll it back)."""
    names = request.fixturenames
    if "transactional_db" in names or "live_server" in names:
        request.getfixturevalue("transactional_db")
    elif "db" in names or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
    else:
        return
    clear_cache()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def account(db):
    return AccountFactory(name="Acme")


@pytest.fixture
def owner(account) -> User:
    return UserFactory(account=account, email="owner@acme.test", name="Olivia Owner", role=User.Role.ADMIN)


@pytest.fixture
def agent(account) -> User:
    return UserFactory(account=account, email="agent@acme.test", name="Aditya Agent", role=User.Role.AGENT)


@pytest.fixture
def other_account(db):
    return AccountFactory(name="Globex")


@pytest.fixture
def outsider(other_account) -> User:
    return UserFactory(account=other_account, email="admin@globex.test", name="Greta Globex", role=User.Role.ADMIN)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def bearer_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def owner_client(owner) -> APIClient:
    return bearer_client(owner)


@pytest.fixture
def agent_client(agent) -> APIClient:
    return bearer_client(agent)


@pytest.fixture
def outsider_client(outsider) -> APIClient:
    return bearer_client(outsider)


# --- Dashboard pages (Django's test client, session login; helpers in tests/pages.py) ------


@pytest.fixture
def fast_password_hashing(settings):
    """For tests about pages, not hashing: users are made with a password, and real
    hashing is slow on purpose. Use with pytest.mark.usefixtures("fast_password_hashing")."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner_web(owner) -> Client:
    """A Django test client logged in as the account's admin."""
    return logged_in(owner)


@pytest.fixture
def agent_web(agent) -> Client:
    """A Django test client logged in as an agent of the same account."""
    return logged_in(agent)


@pytest.fixture
def outsider_web(outsider) -> Client:
    """A Django test client logged in as the other account's admin."""
    return logged_in(outsider)


@pytest.fixture(scope="session")
def _graph_server():
    from tests.fake_graph import FakeGraphServer

    server = FakeGraphServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake_graph(_graph_server, settings):
    """The fake Graph API on 127.0.0.1, fresh for the test, and the settings pointing
    the real Cloud API client at it."""
    _graph_server.reset()
    settings.WHATSAPP_GRAPH_URL = _graph_server.base_url
    return _graph_server


@pytest.fixture
def whatsapp_connection(fake_graph, account):
    """A Cloud API connection of the owner's account, known to the fake Graph API."""
    from messaging.models import WhatsAppConnection
    from messaging.services import verify_token_digest

    fake_graph.add_phone_number("1001", display="+1 555-010-1001", name="Acme Sales")
    return WhatsAppConnection.objects.create(
        account=account,
        phone_number_id="1001",
        waba_id="2002",
        display_phone_number="+1 555-010-1001",
        access_token=fake_graph.state.access_token,
        app_secret="test-app-secret",
        verify_token_hash=verify_token_digest("test-verify-token"),
    )


@pytest.fixture
def purged_broker():
    """django-q2's task queue empty before and after: under Redis it outlives the test database."""
    broker = get_broker()
    broker.purge_queue()
    yield broker
    broker.purge_queue()


# --- Real-browser tests (tests/browser.py) ------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium (Debian's, never downloaded), one per test module; each test
    gets its own context. Fails, never skips, when Chromium is missing."""
    from tests.browser import launched_chromium

    with launched_chromium() as browser:
        yield browser


@pytest.fixture
def site(live_server, settings) -> str:
    """The live server's base URL. It runs in this process on the test database, so
    objects the test creates are what the browser sees."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return live_server.url


def _page(chromium, site, **kwargs):
    from tests.browser import new_page

    page = new_page(chromium, site, **kwargs)
    yield page
    page.context.close()


@pytest.fixture
def anonymous_page(chromium, site):
    """A browser page with no session."""
    yield from _page(chromium, site)


@pytest.fixture
def owner_page(chromium, site, owner):
    """A browser page logged in as the account's admin."""
    yield from _page(chromium, site, user=owner)


@pytest.fixture
def agent_page(chromium, site, agent):
    """A browser page logged in as an agent of the same account."""
    yield from _page(chromium, site, user=agent)
