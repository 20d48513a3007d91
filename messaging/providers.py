"""WhatsApp providers behind one interface, chosen in one place (``provider_for``).

``CloudApiProvider`` talks to Meta's Graph API with ``requests``: timeouts, retries with
backoff on 429, 5xx and Meta's throughput errors, and never a retry once Meta may have
accepted a message. ``SandboxProvider`` is the embedded default for an account without
a connection: it assigns wamids and its statuses walk sent → delivered → read.
"""

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings

from messaging.models import Message, WhatsAppConnection

logger = logging.getLogger(__name__)

# Meta error codes worth another try after a pause: throughput exceeded, too many
# messages to one user, throughput upgrade in progress.
RETRYABLE_META_CODES = {130429, 131056, 131057}
SANDBOX_TEMPLATES = [
    {"name": "hello_world", "language": "en_US", "category": "UTILITY", "body": "Hello from {{1}}!"},
    {
        "name": "appointment_reminder",
        "language": "en_US",
        "category": "UTILITY",
        "body": "Hi {{1}}, this is a reminder of your appointment on {{2}}.",
    },
    {
        "name": "special_offer",
        "language": "en_US",
        "category": "MARKETING",
        "body": "Hi {{1}}, we have a special offer for you this week.",
    },
]


class ProviderError(Exception):
    """A send or call that did not succeed.

    ``retryable``: nothing was accepted and trying later may work. ``code`` is Meta's
    error code as text (e.g. "131047"), or one of ours: NETWORK, TIMEOUT, HTTP_<status>."""

    def __init__(self, code: str, title: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(f"{code}: {title}")
        self.code = code
        self.title = title
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class SendResult:
    wamid: str


class Provider(Protocol):
    name: str

    def send_text(self, *, to: str, body: str, reference: str) -> SendResult: ...

    def send_template(self, *, to: str, name: str, language: str, components: list, reference: str) -> SendResult: ...

    def list_templates(self) -> list[dict]: ...


_local = threading.local()


def shared_session() -> requests.Session:
    """The HTTP session of this thread of this process, kept between sends: its
    connection pool keeps the (TLS) connection to the Graph API alive instead of a
    handshake per message. Per thread because a Session is not thread-safe; per
    process because a forked worker must not share its parent's sockets."""
    session = getattr(_local, "session", None)
    if session is None or _local.pid != os.getpid():
        session = _local.session = requests.Session()
        _local.pid = os.getpid()
    return session


class CloudApiProvider:
    name = Message.Provider.CLOUD

    def __init__(
        self,
        *,
        phone_number_id: str,
        waba_id: str,
        access_token: str,
        base_url: str | None = None,
        session: requests.Session | None = None,
        max_attempts: int = 4,
        backoff: float = 0.5,
        timeout: tuple[float, float] = (5, 20),
    ):
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.access_token = access_token
        self.base_url = (base_url or settings.WHATSAPP_GRAPH_URL).rstrip("/")
        self.session = session or shared_session()
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.timeout = timeout

    @classmethod
    def for_connection(cls, connection: WhatsAppConnection, **kwargs) -> "CloudApiProvider":
        return cls(
            phone_number_id=connection.phone_number_id,
            waba_id=connection.waba_id,
            access_token=connection.access_token,
            **kwargs,
        )

    # --- HTTP ---------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, json: dict | None = None, params: dict | None = None) -> dict:
        """One Graph API call with retries. A POST is retried only when the request
        certainly did not reach Meta (connection refused) or Meta said to retry."""
        if not url.startswith("http"):
            url = f"{self.base_url}/{url.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self.access_token}"}
        last_error: ProviderError | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.ReadTimeout:
                # The request went out: Meta may have accepted it, so a POST is not repeated.
                if method != "GET":
                    raise ProviderError("TIMEOUT", "The Graph API did not answer in time.") from None
                last_error = ProviderError("TIMEOUT", "The Graph API did not answer in time.", retryable=True)
            except requests.exceptions.ConnectionError as exc:  # includes ConnectTimeout: nothing was sent
                last_error = ProviderError("NETWORK", f"Could not reach the Graph API: {exc}", retryable=True)
            else:
                body = _json_or_empty(response)
                if response.ok:
                    return body
                last_error = _error_from(response, body)
                if not last_error.retryable:
                    raise last_error
            if attempt < self.max_attempts:
                pause = last_error.retry_after or self.backoff * 2 ** (attempt - 1)
                time.sleep(min(pause, 30))
        raise last_error

    def _message(self, payload: dict, reference: str) -> SendResult:
        body = self._request(
            "POST",
            f"{self.phone_number_id}/messages",
            json={
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                # Echoed in status webhooks: links a status to our message even if the
                # answer with the wamid was lost.
                "biz_opaque_callback_data": reference,
                **payload,
            },
        )
        try:
            return SendResult(wamid=body["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise ProviderError("BAD_RESPONSE", "The Graph API answer has no message id.") from None

    # --- Provider interface -------------------------------------------------------------

    def send_text(self, *, to: str, body: str, reference: str) -> SendResult:
        return self._message({"to": to, "type": "text", "text": {"preview_url": False, "body": body}}, reference)

    def send_template(self, *, to: str, name: str, language: str, components: list, reference: str) -> SendResult:
        template = {"name": name, "language": {"code": language}}
        if components:
            template["components"] = components
        return self._message({"to": to, "type": "template", "template": template}, reference)

    def list_templates(self) -> list[dict]:
        """Every template of the WhatsApp Business Account, following ``paging.next``
        (only to the configured Graph host: the token goes with each page)."""
        templates: list[dict] = []
        url = f"{self.base_url}/{self.waba_id}/message_templates"
        params: dict | None = {"limit": 100, "fields": "id,name,language,status,category,components"}
        allowed_host = urlsplit(self.base_url).netloc
        for _ in range(100):  # 10,000 templates at most; Meta allows far fewer
            body = self._request("GET", url, params=params)
            templates.extend(body.get("data", []))
            url = (body.get("paging") or {}).get("next")
            if not url or urlsplit(url).netloc != allowed_host:
                break
            params = None  # the next URL carries them
        return templates

    def phone_number_info(self) -> dict:
        """Checks the credentials: the number's display phone and verified name."""
        return self._request(
            "GET",
            f"{self.phone_number_id}",
            params={"fields": "display_phone_number,verified_name,quality_rating"},
        )


def _json_or_empty(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_from(response: requests.Response, body: dict) -> ProviderError:
    error = body.get("error") or {}
    code = error.get("code")
    title = error.get("error_user_msg") or error.get("message") or response.reason or "Graph API error"
    details = (error.get("error_data") or {}).get("details")
    if details and details not in title:
        title = f"{title} ({details})"
    retry_after = response.headers.get("Retry-After")
    retryable = response.status_code == 429 or response.status_code >= 500 or code in RETRYABLE_META_CODES
    return ProviderError(
        str(code) if code is not None else f"HTTP_{response.status_code}",
        str(title)[:300],
        retryable=retryable,
        retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


class SandboxProvider:
    """Offline stand-in for the Cloud API: accepts every send, assigns a wamid; the
    sending service then walks the status sent → delivered → read in the background."""

    name = Message.Provider.SANDBOX

    def send_text(self, *, to: str, body: str, reference: str) -> SendResult:
        return SendResult(wamid=f"wamid.sandbox.{uuid.uuid4().hex}")

    def send_template(self, *, to: str, name: str, language: str, components: list, reference: str) -> SendResult:
        return SendResult(wamid=f"wamid.sandbox.{uuid.uuid4().hex}")

    def list_templates(self) -> list[dict]:
        return [
            {
                "id": f"sandbox-{t['name']}",
                "name": t["name"],
                "language": t["language"],
                "status": "APPROVED",
                "category": t["category"],
                "components": [{"type": "BODY", "text": t["body"]}],
            }
            for t in SANDBOX_TEMPLATES
        ]


def provider_for(account) -> Provider:
    """The one place that decides how an account's messages go out."""
    return provider_for_connection(WhatsAppConnection.objects.filter(account=account).first())


def provider_for_connection(connection: WhatsAppConnection | None) -> Provider:
    """The same decision for a caller that loaded the account's connection already (the
    delivery path joins it to the message: one query less per send)."""
    if connection is None:
        return SandboxProvider()
    return CloudApiProvider.for_connection(connection)
