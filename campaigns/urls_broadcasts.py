"""The broadcast pages of the dashboard (HTML). The API's routes are in
campaigns/api/broadcasts.py. Names are global: the navigation shows "Broadcasts" when
"broadcasts" resolves."""

from django.urls import path

from campaigns import views_broadcasts as views

urlpatterns = [
    path("broadcasts", views.broadcast_list_view, name="broadcasts"),
    path("broadcasts/new", views.broadcast_create_view, name="broadcast-create"),
    path("broadcasts/audience", views.broadcast_audience_view, name="broadcast-audience"),
    path("broadcasts/<uuid:broadcast_id>", views.broadcast_detail_view, name="broadcast-detail"),
    path("broadcasts/<uuid:broadcast_id>/send", views.broadcast_send_view, name="broadcast-send"),
    path("broadcasts/<uuid:broadcast_id>/cancel", views.broadcast_cancel_view, name="broadcast-cancel"),
]
