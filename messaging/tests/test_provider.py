"""The real Cloud API client against the fake Graph API server on 127.0.0.1."""

import pytest

from messaging.providers import CloudApiProvider, ProviderError


@pytest.fixture
def provider(fake_graph):
    fake_graph.add_phone_number("1001")
    return CloudApiProvider(
        phone_number_id="1001", waba_id="2002", access_token=fake_graph.state.access_token, backoff=0.01
    )


def test_send_text_posts_metas_body_and_returns_the_wamid(provider, fake_graph):
    result = provider.send_text(to="919876543210", body="Hello", reference="ref-1")

    assert result.wamid.startswith("wamid.")
    [sent] = fake_graph.requests
    assert sent.method == "POST"
    assert sent.path == "/v21.0/1001/messages"
    assert sent.headers["authorization"] == f"Bearer {fake_graph.state.access_token}"
    assert sent.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "biz_opaque_callback_data": "ref-1",
        "to": "919876543210",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
    }


def test_throughput_errors_are_retried_with_backoff(provider, fake_graph):
    fake_graph.fail_next(code=130429, status=400, times=2)

    result = provider.send_text(to="919876543210", body="Hi", reference="r")

    assert result.wamid
    assert len(fake_graph.sent_messages()) == 3


def test_a_refused_send_is_not_retried(provider, fake_graph):
    fake_graph.fail_next(code=131047, status=400)

    with pytest.raises(ProviderError) as refused:
        provider.send_text(to="919876543210", body="Hi", reference="r")

    assert refused.value.code == "131047"
    assert refused.value.retryable is False
    assert len(fake_graph.sent_messages()) == 1


def test_a_timeout_after_sending_is_not_repeated(fake_graph):
    slow = CloudApiProvider(
        phone_number_id="1001", waba_id="2002", access_token=fake_graph.state.access_token, timeout=(2, 0.3)
    )
    fake_graph.fail_next(code=None, status=200, delay=1.0, body="{}")

    with pytest.raises(ProviderError) as timed_out:
        slow.send_text(to="919876543210", body="Hi", reference="r")

    assert timed_out.value.code == "TIMEOUT"
    assert len(fake_graph.sent_messages()) == 1


def test_templates_follow_paging(provider, fake_graph):
    fake_graph.set_templates("2002", [{"name": f"t{i}", "language": "en_US", "status": "APPROVED"} for i in range(250)])

    templates = provider.list_templates()

    assert [t["name"] for t in templates] == [f"t{i}" for i in range(250)]
    assert len(fake_graph.requests) == 3
