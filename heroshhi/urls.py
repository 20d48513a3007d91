from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from heroshhi.api import api_path


def healthz(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    *api_path("api/schema", SpectacularAPIView.as_view(), "api-schema"),
    *api_path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), "api-docs"),
    path("api/", include("accounts.api.urls")),
    path("api/", include("leads.api.urls")),
    path("api/", include("messaging.api.urls")),
    path("api/", include("campaigns.api.urls")),
    path("", include("leads.urls")),
    path("", include("leads.urls_contacts")),
    path("", include("messaging.urls")),
    path("", include("campaigns.urls")),
    path("", include("accounts.urls_team")),
    path("", include("leads.urls_import")),
    path("", include("leads.urls_analytics")),
    path("", include("campaigns.urls_broadcasts")),
    path("", include("messaging.urls_settings")),
    path("", include("accounts.urls")),
]
