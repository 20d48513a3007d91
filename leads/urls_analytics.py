"""The analytics page of the dashboard (HTML); the API's is GET /api/leads/analytics."""

from django.urls import path
from django.views.generic import RedirectView

from leads import views_analytics as views

urlpatterns = [
    path("analytics", views.analytics_view, name="analytics"),
    path("analytics/", RedirectView.as_view(pattern_name="analytics", query_string=True)),
]
