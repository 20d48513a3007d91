from django.apps import AppConfig


class MessagingConfig(AppConfig):
    """Messages, templates, the WhatsApp connection and its providers (to come)."""

    name = "messaging"
    default_auto_field = "django.db.models.BigAutoField"
