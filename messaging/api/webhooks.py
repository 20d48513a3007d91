"""Meta's webhook (/api/webhooks/whatsapp): the verify handshake and signed events."""

urlpatterns: list = []
