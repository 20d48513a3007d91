"""The lead pages of the dashboard (HTML). The API's routes are in leads/api/urls.py."""

from django.urls import path
from django.views.generic import RedirectView

from leads import views

app_name = "leads"

urlpatterns = [
    path("leads", views.lead_list_view, name="list"),
    path("leads/", RedirectView.as_view(pattern_name="leads:list", query_string=True)),
    path("leads/new", views.lead_create_view, name="create"),
    path("leads/bulk", views.lead_bulk_view, name="bulk"),
    path("leads/<uuid:lead_id>", views.lead_detail_view, name="detail"),
    path("leads/<uuid:lead_id>/edit", views.lead_edit_view, name="edit"),
    path("leads/<uuid:lead_id>/delete", views.lead_delete_view, name="delete"),
    path("leads/<uuid:lead_id>/engagements", views.lead_engagement_view, name="engagement"),
    path("leads/<uuid:lead_id>/tags", views.lead_tags_add_view, name="tags-add"),
    path("leads/<uuid:lead_id>/tags/<int:tag_id>/remove", views.lead_tag_remove_view, name="tag-remove"),
    path("leads/<uuid:lead_id>/opt-out", views.lead_opt_out_view, name="opt-out"),
    path("leads/<uuid:lead_id>/opt-in", views.lead_opt_in_view, name="opt-in"),
]
