"""Rate limits per the Heroshhi document's table, counted with django-ratelimit in
the shared cache (Redis in production), so every web process sees one counter.

``auth`` is counted per client IP, ``standard`` per user (per IP when anonymous),
``webhook`` per IP. The limits live in ``settings.RATE_LIMITS``.
"""

from dataclasses import dataclass

from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.throttling import BaseThrottle

_KEYS = {"auth": "ip", "standard": "user_or_ip", "webhook": "ip"}


@dataclass(frozen=True)
class RateUsage:
    limited: bool
    retry_after: int


def rate_limit_hit(request, scope: str) -> RateUsage:
    """Counts one request against ``scope`` and says whether it is over the limit."""
    usage = get_usage(
        request,
        group=f"heroshhi:{scope}",
        key=_KEYS[scope],
        rate=settings.RATE_LIMITS[scope],
        increment=True,
    )
    if usage is None:  # RATELIMIT_ENABLE off
        return RateUsage(limited=False, retry_after=0)
    return RateUsage(limited=usage["should_limit"], retry_after=max(1, usage["time_left"]))


class _ScopedRateThrottle(BaseThrottle):
    scope = ""

    def allow_request(self, request, view):
        self.usage = rate_limit_hit(request, self.scope)
        return not self.usage.limited

    def wait(self):
        return self.usage.retry_after


class AuthRateThrottle(_ScopedRateThrottle):
    scope = "auth"


class StandardRateThrottle(_ScopedRateThrottle):
    scope = "standard"


class WebhookRateThrottle(_ScopedRateThrottle):
    scope = "webhook"
