import html

import nh3


def clean_text(value: str | None) -> str:
    """Plain text from user input: HTML tags dropped (script and style with their
    content), surrounding whitespace trimmed. The result is stored as plain text and
    escaped again wherever it is rendered."""
    if not value:
        return ""
    return html.unescape(nh3.clean(str(value), tags=set())).strip()
