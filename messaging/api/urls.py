from django.urls import include, path

from heroshhi.api import api_path
from messaging.api import views

urlpatterns = [
    path("", include("messaging.api.webhooks")),
    *api_path("messages", views.MessageListView.as_view(), "api-messages"),
    # The fixed routes first: /messages/<ref> takes any other segment (a lead id or a phone).
    *api_path("messages/send", views.MessageSendView.as_view(), "api-messages-send"),
    *api_path("messages/templates", views.MessageTemplatesView.as_view(), "api-messages-templates"),
    *api_path("messages/<str:ref>", views.MessagesOfLeadOrPhoneView.as_view(), "api-messages-of"),
    *api_path("whatsapp/status", views.WhatsAppStatusView.as_view(), "api-whatsapp-status"),
    *api_path("whatsapp/connect", views.WhatsAppConnectView.as_view(), "api-whatsapp-connect"),
    *api_path("whatsapp/disconnect", views.WhatsAppDisconnectView.as_view(), "api-whatsapp-disconnect"),
    *api_path("whatsapp/send", views.WhatsAppSendView.as_view(), "api-whatsapp-send"),
    *api_path("whatsapp/send-bulk", views.WhatsAppSendBulkView.as_view(), "api-whatsapp-send-bulk"),
    *api_path("whatsapp/coexistence", views.WhatsAppCoexistenceView.as_view(), "api-whatsapp-coexistence"),
    *api_path("send_message", views.HeyDocSendMessageView.as_view(), "api-heydoc-send-message"),
]
