"""The WhatsApp settings page of the dashboard through Django's test client: admins
only (agents get a 404 and no navigation entry), the sandbox and a connection's
status, connecting against the fake Graph API (Meta's refusal as a form error,
nothing saved), secrets never in the HTML, disconnect with a confirmation,
coexistence, the template list with its refresh, and the webhook URL. The page calls
the same services as /api/whatsapp/* and /api/messages/templates."""

import pytest

from messaging.models import Template, WhatsAppConnection
from tests.pages import logged_in, page_text

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

URL = "/settings/whatsapp"


@pytest.fixture
def meta_number(fake_graph):
    fake_graph.add_phone_number("3003", display="+91 98765 00000", name="Acme Support")
    fake_graph.set_templates(
        "4004",
        [
            {"id": "9", "name": "welcome", "language": "en_US", "status": "APPROVED", "category": "MARKETING"},
            {"id": "10", "name": "renewal", "language": "hi", "status": "PENDING", "category": "UTILITY"},
        ],
    )
    return fake_graph


def connect_form(fake_graph, **overrides) -> dict:
    return {
        "phone_number_id": "3003",
        "waba_id": "4004",
        "access_token": fake_graph.state.access_token,
        "app_secret": "app-secret-xyz",
        "verify_token": "verify-me-please",
        "throughput_cap": "80",
        **overrides,
    }


def test_agents_get_a_404_everywhere_and_no_nav_entry(agent_web, whatsapp_connection):
    assert agent_web.get(URL).status_code == 404
    for path in ("connect", "disconnect", "coexistence", "templates/refresh"):
        assert agent_web.post(f"{URL}/{path}").status_code == 404
    assert agent_web.get(f"{URL}/disconnect").status_code == 404
    assert WhatsAppConnection.objects.filter(pk=whatsapp_connection.pk).exists()
    assert 'href="/settings/whatsapp"' not in agent_web.get("/broadcasts").content.decode()


def test_admins_see_it_in_the_navigation(owner_web):
    assert 'href="/settings/whatsapp"' in owner_web.get(URL).content.decode()


def test_sandbox_status_and_the_webhook_url(owner_web):
    response = owner_web.get(URL)
    assert response.status_code == 200
    text = page_text(response)
    assert "Status Sandbox" in text
    assert "Connect a WhatsApp Cloud API number" in text
    assert "http://testserver/api/webhooks/whatsapp" in text
    assert "verify token" in text
    assert "Coexistence" not in text  # only with a connection
    assert "Disconnect" not in text


def test_connect_against_meta(owner_web, account, meta_number):
    response = owner_web.post(f"{URL}/connect", connect_form(meta_number))
    assert response.status_code == 302 and response["Location"] == URL
    connection = WhatsAppConnection.objects.get(account=account)
    assert (connection.phone_number_id, connection.waba_id) == ("3003", "4004")
    assert connection.access_token == meta_number.state.access_token
    assert connection.app_secret == "app-secret-xyz"
    page = owner_web.get(URL)
    text = page_text(page)
    assert "WhatsApp connected; templates loaded from Meta." in text
    assert "Status Connected" in text
    assert "Display number +91 98765 00000" in text
    assert "Phone-number id 3003" in text and "WhatsApp Business Account id 4004" in text
    assert "Throughput cap 80 messages a second" in text
    assert "Token health OK" in text
    assert "Quality rating GREEN" in text  # as Meta reported it at connect time
    assert connection.quality_rating == "GREEN"
    assert "welcome en_US MARKETING Approved" in text and "renewal hi UTILITY Pending" in text
    body = page.content.decode()
    for secret in (meta_number.state.access_token, "app-secret-xyz", "verify-me-please"):
        assert secret not in body


def test_meta_refusing_the_token_is_a_form_error_and_nothing_is_saved(owner_web, account, meta_number):
    response = owner_web.post(f"{URL}/connect", connect_form(meta_number, access_token="wrong-token-123"))
    assert response.status_code == 400
    text = page_text(response)
    assert "Not connected: please correct the errors below." in text
    assert "WhatsApp refused these credentials" in text
    assert not WhatsAppConnection.objects.exists()
    body = response.content.decode()
    for secret in ("wrong-token-123", "app-secret-xyz", "verify-me-please"):
        assert secret not in body  # not even back in the form
    assert 'value="3003"' in body  # the ids are kept


def test_form_mistakes_are_shown_before_calling_meta(owner_web, meta_number):
    response = owner_web.post(f"{URL}/connect", connect_form(meta_number, phone_number_id="../1", verify_token="short"))
    assert response.status_code == 400
    text = page_text(response)
    assert "Digits only" in text and "at least 8 characters" in text
    assert meta_number.requests == []  # nothing asked of Meta
    assert not WhatsAppConnection.objects.exists()


def test_a_number_of_another_workspace_cannot_be_connected(outsider, whatsapp_connection, fake_graph):
    response = logged_in(outsider).post(
        f"{URL}/connect", connect_form(fake_graph, phone_number_id="1001", waba_id="2002")
    )
    assert response.status_code == 400
    assert "Already connected to another workspace." in page_text(response)
    assert WhatsAppConnection.objects.count() == 1


def test_a_connection_never_shows_its_secrets(owner_web, whatsapp_connection, fake_graph):
    body = owner_web.get(URL).content.decode()
    for secret in (fake_graph.state.access_token, "test-app-secret", "test-verify-token"):
        assert secret not in body
    assert 'type="password"' in body


def test_token_health_after_meta_refused_the_token(owner_web, whatsapp_connection):
    whatsapp_connection.status = WhatsAppConnection.Status.TOKEN_INVALID
    whatsapp_connection.status_detail = "190: Error validating access token"
    whatsapp_connection.save()
    text = page_text(owner_web.get(URL))
    assert "Access token invalid" in text
    assert "Token health 190: Error validating access token Connect again with a new access token." in text


def test_disconnect_asks_first(owner_web, account, whatsapp_connection):
    confirm = owner_web.get(f"{URL}/disconnect")
    assert confirm.status_code == 200
    assert "Disconnect +1 555-010-1001?" in page_text(confirm)
    assert WhatsAppConnection.objects.exists()
    response = owner_web.post(f"{URL}/disconnect")
    assert response.status_code == 302
    assert not WhatsAppConnection.objects.filter(account=account).exists()
    text = page_text(owner_web.get(URL))
    assert "WhatsApp disconnected; messages now go to the sandbox." in text
    assert "Status Sandbox" in text


def test_coexistence_settings(owner_web, whatsapp_connection):
    page = owner_web.get(URL).content.decode()
    assert 'name="record_app_echoes"' in page and "checked" in page
    response = owner_web.post(f"{URL}/coexistence", {"enabled": "on", "sync_app_contacts": "on"})
    assert response.status_code == 302
    whatsapp_connection.refresh_from_db()
    assert whatsapp_connection.coexistence_enabled is True
    assert whatsapp_connection.record_app_echoes is False  # unticked
    assert whatsapp_connection.sync_app_contacts is True
    assert whatsapp_connection.throughput_cap == 20  # Meta's cap for coexistence numbers
    text = page_text(owner_web.get(URL))
    assert "Coexistence settings saved. Throughput cap: 20 messages a second." in text


def test_coexistence_without_a_connection_says_so(owner_web):
    text = page_text(owner_web.post(f"{URL}/coexistence", {"enabled": "on"}, follow=True))
    assert "This workspace has no WhatsApp Cloud API connection" in text
    assert not WhatsAppConnection.objects.exists()


def test_refresh_templates_from_meta(owner_web, account, whatsapp_connection, fake_graph):
    Template.objects.create(account=account, name="gone", language="en", status="APPROVED")
    fake_graph.set_templates(
        "2002", [{"id": "7", "name": "order_update", "language": "en", "status": "APPROVED", "category": "UTILITY"}]
    )
    response = owner_web.post(f"{URL}/templates/refresh")
    assert response.status_code == 302 and response["Location"] == f"{URL}#templates"
    assert list(Template.objects.filter(account=account).values_list("name", flat=True)) == ["order_update"]
    text = page_text(owner_web.get(URL))
    assert "Templates refreshed: 1 template." in text
    assert "order_update en UTILITY Approved" in text and "gone" not in text


def test_refresh_refused_by_meta_is_a_flash_error(owner_web, account, whatsapp_connection, fake_graph):
    fake_graph.state.access_token = "rotated-by-meta"
    text = page_text(owner_web.post(f"{URL}/templates/refresh", follow=True))
    assert "WhatsApp refused the template sync" in text


def test_sandbox_templates_load_on_first_view_and_refresh(owner_web, account):
    text = page_text(owner_web.get(URL))
    assert "Refresh from the sandbox" in text
    assert Template.objects.filter(account=account, is_sandbox=True).exists()  # loaded on first use
    assert "Approved" in text
    Template.objects.filter(account=account).delete()
    owner_web.post(f"{URL}/templates/refresh")
    assert Template.objects.filter(account=account, is_sandbox=True).exists()
