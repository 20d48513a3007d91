import html

import nh3

_MAX_PASSES = 10


def clean_text(value: str | None) -> str:
    """Plain text from user input: HTML tags dropped (script and style with their
    content), surrounding whitespace trimmed. The result is stored as plain text and
    escaped again wherever it is rendered."""
    if not value:
        return ""
    text = str(value)
    # Unescaping can uncover markup that was entity-encoded ("&lt;script&gt;"), so
    # clean again until nothing changes.
    for _ in range(_MAX_PASSES):
        cleaned = html.unescape(nh3.clean(text, tags=set()))
        if cleaned == text:
            return cleaned.strip()
        text = cleaned
    # Encoded deeper than any real text is: keep no angle bracket at all.
    return text.replace("<", "").replace(">", "").strip()
