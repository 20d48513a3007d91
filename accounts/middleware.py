import time

from django.conf import settings
from django.contrib.auth import logout

_STARTED = "_auth_started_at"
_SEEN = "_auth_seen_at"
# Write the last-seen time at most once a minute, not on every request.
_SEEN_RESOLUTION = 60


class SessionTimeoutMiddleware:
    """Ends a session idle for SESSION_IDLE_TIMEOUT, or older than
    SESSION_ABSOLUTE_TIMEOUT however active it is."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and hasattr(request, "session"):
            now = int(time.time())
            session = request.session
            started = session.get(_STARTED)
            seen = session.get(_SEEN, started)
            if started is None:
                session[_STARTED] = session[_SEEN] = now
            elif now - started > settings.SESSION_ABSOLUTE_TIMEOUT or now - seen > settings.SESSION_IDLE_TIMEOUT:
                logout(request)
            elif now - seen >= _SEEN_RESOLUTION:
                session[_SEEN] = now
        return self.get_response(request)
