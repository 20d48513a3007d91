"""Helpers of the dashboard page tests (Django's test client): the text a person reads
on a page, and a client logged in as a user. The fixtures owner_web, agent_web,
outsider_web and fast_password_hashing live in the top-level conftest.py."""

import html
import re

from django.test import Client


def page_text(response) -> str:
    """What a person reads: <script>/<style> dropped, tags dropped, entities decoded,
    whitespace collapsed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def logged_in(user) -> Client:
    """A Django test client with a session of `user` (no password check)."""
    client = Client()
    client.force_login(user)
    return client
