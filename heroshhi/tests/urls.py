"""A URLconf for the envelope tests: the real routes plus views that fail on purpose."""

from django.urls import include, path
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from heroshhi import errors

SECRET_TEXT = "kaboom: secret internals at /srv/heroshhi/boom.py"


def domain_errors() -> dict[str, type[errors.DomainError]]:
    """Every DomainError subclass, by class name (subclasses of subclasses too)."""
    found: dict[str, type[errors.DomainError]] = {}
    pending = [errors.DomainError]
    while pending:
        cls = pending.pop()
        found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


def boom(request):
    raise RuntimeError(SECRET_TEXT)


class _OpenView(APIView):
    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = ()


class BoomApiView(_OpenView):
    def get(self, request):
        raise RuntimeError(SECRET_TEXT)


class DomainErrorView(_OpenView):
    def get(self, request, name):
        cls = domain_errors()[name]
        if request.query_params.get("errors"):
            raise cls("Explained.", errors={"field": ["Is wrong."]})
        raise cls()


urlpatterns = [
    path("api/test-boom", boom),
    path("api/test-boom-drf", BoomApiView.as_view()),
    path("api/test-domain-error/<str:name>", DomainErrorView.as_view()),
    path("", include("heroshhi.urls")),
]
