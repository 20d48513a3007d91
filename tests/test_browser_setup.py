"""The browser tests' own setup (tests/browser.py): Debian's Chromium is launched,
never downloaded, and a missing one fails the run with the fix instead of skipping."""

import pytest

from tests import browser


def test_a_missing_chromium_fails_with_the_fix_not_a_skip(monkeypatch):
    monkeypatch.setattr(browser, "CHROMIUM_PATH", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception) as failure:
        browser.chromium_path()
    message = str(failure.value)
    assert "/nonexistent/chromium" in message
    assert "apt-get install chromium" in message


def test_a_file_that_is_not_executable_is_not_a_browser(monkeypatch, tmp_path):
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    monkeypatch.setattr(browser, "CHROMIUM_PATH", str(fake))
    with pytest.raises(pytest.fail.Exception):
        browser.chromium_path()


@pytest.mark.browser
def test_the_system_chromium_launches_headless():
    with browser.launched_chromium() as chromium:
        page = chromium.new_page()
        page.set_content("<h1>Hello</h1>")
        assert page.inner_text("h1") == "Hello"
        assert chromium.version.split(".")[0].isdigit()
