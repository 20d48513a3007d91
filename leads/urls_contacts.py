"""The contacts and tag pages of the dashboard (HTML)."""

from django.urls import path
from django.views.generic import RedirectView

from leads import views_contacts as views

urlpatterns = [
    path("contacts", views.contact_list_view, name="contacts"),
    path("contacts/", RedirectView.as_view(pattern_name="contacts", query_string=True)),
    path("contacts/tags", views.tag_list_view, name="contact-tags"),
    path("contacts/tags/<int:tag_id>/edit", views.tag_edit_view, name="contact-tag-edit"),
    path("contacts/tags/<int:tag_id>/delete", views.tag_delete_view, name="contact-tag-delete"),
]
