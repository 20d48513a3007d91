"""Helpers shared by the campaign tests."""

from messaging.models import Template


def approved_template(account, name: str = "offer", body: str = "Hi {{1}}, {{2}} off this week.") -> Template:
    """An approved template of a workspace on the sandbox (as the sandbox lists them:
    a workspace without any would load the sandbox's own, replacing the others)."""
    return Template.objects.create(
        account=account,
        name=name,
        language="en_US",
        status=Template.Status.APPROVED,
        components=[{"type": "BODY", "text": body}],
        is_sandbox=True,
    )
