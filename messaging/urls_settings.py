"""The WhatsApp settings page of the dashboard (HTML, admins only). The API's routes
are in messaging/api/urls.py. Names are global: the navigation shows "WhatsApp
settings" to admins when "whatsapp-settings" resolves."""

from django.urls import path

from messaging import views_settings as views

urlpatterns = [
    path("settings/whatsapp", views.whatsapp_settings_view, name="whatsapp-settings"),
    path("settings/whatsapp/connect", views.whatsapp_connect_view, name="whatsapp-connect"),
    path("settings/whatsapp/disconnect", views.whatsapp_disconnect_view, name="whatsapp-disconnect"),
    path("settings/whatsapp/coexistence", views.whatsapp_coexistence_view, name="whatsapp-coexistence"),
    path(
        "settings/whatsapp/templates/refresh", views.whatsapp_templates_refresh_view, name="whatsapp-templates-refresh"
    ),
]
