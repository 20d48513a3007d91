from django.urls import include, path

from heroshhi.api import api_path
from leads.api import views

urlpatterns = [
    # /leads/import, /leads/import/<job id>, /leads/export: before /leads/<id>.
    path("", include("leads.api.imports")),
    *api_path("leads", views.LeadListCreateView.as_view(), "api-leads"),
    *api_path("leads/bulk-update", views.LeadBulkUpdateView.as_view(), "api-leads-bulk-update"),
    *api_path("leads/bulk-assign", views.LeadBulkAssignView.as_view(), "api-leads-bulk-assign"),
    *api_path("leads/bulk-delete", views.LeadBulkDeleteView.as_view(), "api-leads-bulk-delete"),
    *api_path("leads/analytics", views.LeadAnalyticsView.as_view(), "api-leads-analytics"),
    *api_path("leads/<uuid:lead_id>", views.LeadDetailView.as_view(), "api-lead"),
    *api_path("leads/<uuid:lead_id>/engagement", views.LeadEngagementView.as_view(), "api-lead-engagement"),
    *api_path("leads/<uuid:lead_id>/tags", views.LeadTagsView.as_view(), "api-lead-tags"),
    *api_path("leads/<uuid:lead_id>/tags/<int:tag_id>", views.LeadTagDetailView.as_view(), "api-lead-tag"),
    *api_path("tags", views.TagListCreateView.as_view(), "api-tags"),
    *api_path("tags/<int:tag_id>", views.TagDetailView.as_view(), "api-tag"),
    *api_path("contacts", views.ContactListView.as_view(), "api-contacts"),
    *api_path("webhooks/leads", views.LeadWebhookView.as_view(), "api-webhook-leads"),
]
