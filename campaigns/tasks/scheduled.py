"""django-q2 entry point of scheduled messages: it calls the service."""

from campaigns.services import scheduled


def dispatch_due() -> str:
    """The one-off run at a due second (campaigns.services.dispatch_at): dispatches
    every occurrence due by now. Harmless when they went already (the safety net or
    another cluster took them): it does nothing."""
    return f"{scheduled.scheduled_messages_dispatch_due()} dispatched"
