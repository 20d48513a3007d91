from django.urls import include, path

urlpatterns = [
    path("", include("campaigns.api.broadcasts")),
    path("", include("campaigns.api.drips")),
    path("", include("campaigns.api.scheduled")),
]
