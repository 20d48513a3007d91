"""django-q2 entry points of campaigns: they take ids, load fresh rows, call a service.

``dispatch_due`` runs every minute (campaigns.services.dispatcher_ensure) and drives
all due work; each kind's own tasks live in its module (broadcasts, drips, scheduled)."""

import logging
from importlib import import_module

logger = logging.getLogger(__name__)


def dispatch_due() -> dict:
    """Starts what is due: scheduled broadcasts, drip steps, scheduled messages. Each
    part runs even if another raised (logged) — even one that fails to import — so one
    bad row or module can't stall the rest."""
    done = {}
    for name, module, func in (
        ("broadcasts", "campaigns.services.broadcasts", "broadcasts_start_due"),
        ("drips", "campaigns.services.drips", "enrollments_process_due"),
        ("scheduled", "campaigns.services.scheduled", "scheduled_messages_dispatch_due"),
    ):
        try:
            done[name] = getattr(import_module(module), func)()
        except Exception:
            logger.exception("campaigns dispatch of %s failed", name)
            done[name] = "error"
    return done
