"""Fixtures of the accounts tests (the shared ones live in the top-level conftest.py)."""

import pytest


@pytest.fixture
def many_auth_requests(settings):
    """For a test that needs more than the 5 auth requests per 15 minutes a client
    is allowed (rate limiting itself is tested elsewhere)."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "100/15m"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Real hashing is slow on purpose; these tests check behaviour, not its cost."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
