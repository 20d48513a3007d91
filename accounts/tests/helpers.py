"""Small helpers that read what a user would read: emails and HTML pages."""

import re


def reset_token_from(mail) -> str:
    """The token of a password-reset email, as the user would copy it from the link."""
    match = re.search(r"/reset-password\?token=(\S+)", mail.body)
    assert match, mail.body
    return match.group(1)


def csrf_from_form(html: bytes | str) -> str:
    """The CSRF token of a page's form, as a browser would send it back."""
    if isinstance(html, bytes):
        html = html.decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)
