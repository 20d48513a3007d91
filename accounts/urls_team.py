"""The team pages of the dashboard (HTML, admins only)."""

from django.urls import path
from django.views.generic import RedirectView

from accounts import views_team as views

urlpatterns = [
    path("team", views.team_list_view, name="team"),
    path("team/", RedirectView.as_view(pattern_name="team")),
    path("team/new", views.team_create_view, name="team-create"),
    path("team/<str:user_id>/role", views.team_role_view, name="team-role"),
    path("team/<str:user_id>/deactivate", views.team_deactivate_view, name="team-deactivate"),
    path("team/<str:user_id>/reactivate", views.team_reactivate_view, name="team-reactivate"),
]
