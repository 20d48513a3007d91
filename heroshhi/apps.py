from django.apps import AppConfig


class HeroshhiConfig(AppConfig):
    name = "heroshhi"
    verbose_name = "Heroshhi"

    def ready(self):
        from corsheaders.signals import check_request_enabled

        from heroshhi import checks  # noqa: F401  (registers system checks)

        check_request_enabled.connect(allow_any_origin_for_webhooks, dispatch_uid="heroshhi-webhook-cors")


def allow_any_origin_for_webhooks(sender, request, **kwargs):
    """Webhooks (Meta, form builders) are called from anywhere; the rest of the API
    only from FRONTEND_ORIGINS."""
    return request.path.startswith("/api/webhooks/")
