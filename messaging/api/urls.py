from django.urls import include, path

urlpatterns = [
    path("", include("messaging.api.webhooks")),
]
