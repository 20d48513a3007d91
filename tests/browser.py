"""Real-browser tests: Playwright (sync API) driving Debian's Chromium against a live
server on 127.0.0.1. Never downloads a browser (no ``playwright install``): the
system's /usr/bin/chromium (or CHROMIUM_PATH) is launched headless.

A missing Chromium fails the tests with the fix in the message instead of skipping
them: CI must never pass with its browser tests silently left out (.ci/run installs
Debian's ``chromium`` package)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
# Playwright's own waits (a selector to appear, a navigation) give up after this long.
TIMEOUT_MS = 15_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}  # an iPhone 12-sized screen


def chromium_path() -> str:
    path = Path(CHROMIUM_PATH)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM_PATH}: the browser tests need Debian's chromium package "
            "(`apt-get install chromium`, which .ci/run does), or CHROMIUM_PATH naming a Chromium binary. "
            "They never download a browser.",
            pytrace=False,
        )
    return str(path)


@contextmanager
def launched_chromium() -> Iterator:
    """Playwright and a headless Chromium, for the duration of the block.

    The sync API runs an asyncio loop in this thread while it is started, which makes
    Django refuse ORM calls from the test ("You cannot call this from an async
    context"). The test's ORM calls are plain synchronous code on their own
    connection, so the check is lifted for the block, and only for it."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
            try:
                yield browser
            finally:
                browser.close()


def session_cookie_for(user, base_url: str) -> dict:
    """A logged-in session for ``user``, as the cookie a browser would hold after
    the login form (faster than typing it in every test; one test does type it)."""
    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": base_url,
        "httpOnly": True,
        "sameSite": "Lax",
    }


def new_page(browser, base_url: str, *, user=None, viewport: dict | None = None):
    """A fresh browser context (its own cookies) and page, logged in as ``user``."""
    context = browser.new_context(base_url=base_url, viewport=viewport or DESKTOP)
    context.set_default_timeout(TIMEOUT_MS)
    if user is not None:
        context.add_cookies([session_cookie_for(user, base_url)])
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    return page


def log_in(page, *, email: str, password: str) -> None:
    """Logs in through the real /login form, as a person does."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
