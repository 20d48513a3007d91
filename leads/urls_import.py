"""The CSV import pages of the dashboard (HTML). The API's are in leads/api/imports.py."""

from django.urls import path
from django.views.generic import RedirectView

from leads import views_import as views

urlpatterns = [
    path("leads/import", views.lead_import_view, name="lead-import"),
    path("leads/import/", RedirectView.as_view(pattern_name="lead-import")),
    path("leads/import/report/<str:token>", views.lead_import_report_view, name="lead-import-report"),
    path(
        "leads/import/report/<str:token>/errors.csv",
        views.lead_import_report_errors_view,
        name="lead-import-report-errors",
    ),
    path("leads/import/<uuid:job_id>", views.lead_import_job_view, name="lead-import-job"),
    path("leads/import/<uuid:job_id>/status", views.lead_import_job_status_view, name="lead-import-job-status"),
    path("leads/import/<uuid:job_id>/errors.csv", views.lead_import_job_errors_view, name="lead-import-job-errors"),
]
