"""A lead's WhatsApp conversation on the dashboard (HTML): the thread htmx polls and
the reply box. The API's routes are in messaging/api/urls.py."""

from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    path("leads/<uuid:lead_id>/conversation", views.conversation_view, name="conversation"),
    path("leads/<uuid:lead_id>/reply", views.reply_view, name="reply"),
]
