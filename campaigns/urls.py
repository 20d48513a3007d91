"""The drip and scheduled-message pages of the dashboard (HTML). The API's routes are
in campaigns/api/urls.py. Names are global ("drips", "scheduled", …): the
navigation shows an entry when its name resolves."""

from django.urls import path

from campaigns import views

urlpatterns = [
    path("drips", views.drip_list_view, name="drips"),
    path("drips/new", views.drip_create_view, name="drip-create"),
    path("drips/enroll", views.drip_enroll_view, name="drip-enroll-bulk"),
    path("drips/<uuid:drip_id>", views.drip_detail_view, name="drip-detail"),
    path("drips/<uuid:drip_id>/edit", views.drip_edit_view, name="drip-edit"),
    path("drips/<uuid:drip_id>/delete", views.drip_delete_view, name="drip-delete"),
    path("drips/<uuid:drip_id>/enroll", views.drip_enroll_view, name="drip-enroll"),
    path(
        "drips/<uuid:drip_id>/enrollments/<int:enrollment_id>/stop",
        views.enrollment_stop_view,
        name="enrollment-stop",
    ),
    path("scheduled", views.scheduled_list_view, name="scheduled"),
    path("scheduled/new", views.scheduled_create_view, name="scheduled-create"),
    path("scheduled/<int:scheduled_id>", views.scheduled_detail_view, name="scheduled-detail"),
    path("scheduled/<int:scheduled_id>/cancel", views.scheduled_cancel_view, name="scheduled-cancel"),
    path("scheduled/<int:scheduled_id>/reactivate", views.scheduled_reactivate_view, name="scheduled-reactivate"),
]
