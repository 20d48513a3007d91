"""WhatsApp providers behind one interface, chosen in one place (``provider_for``).

``CloudApiProvider`` talks to Meta's Graph API with ``requests``: timeouts, retries with
backoff on 429, 5xx and Meta's throughput errors (each attempt taking a throughput slot
of the number), and never a retry once Meta may have accepted a message.
``SandboxProvider`` is the embedded default for an account without a connection: it
assigns wamids and its statuses walk sent → delivered → read.
"""

import functools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from json import dumps as json_dumps
from typing import Protocol
from urllib.parse import urlsplit

import requests
from django.conf import settings
from urllib3.exceptions import MaxRetryError, NewConnectionError

from messaging.models import Message, WhatsAppConnection
from messaging.throughput import throughput_wait

logger = logging.getLogger(__name__)

# Meta error codes worth another try after a pause: throughput exceeded, too many
# messages to one user, throughput upgrade in progress.
RETRYABLE_META_CODES = {130429, 131056, 131057}
# Our codes for a send whose outcome we could not learn: the request reached (or may
# have reached) Meta and the answer was lost. Never retried (it could deliver twice);
# Meta's status webhook, which echoes our message id, can still correct it.
TIMEOUT = "TIMEOUT"
UNKNOWN_OUTCOME = "UNKNOWN_OUTCOME"
BAD_RESPONSE = "BAD_RESPONSE"  # a 2xx answer without a message id
UNKNOWN_OUTCOME_CODES = (TIMEOUT, UNKNOWN_OUTCOME, BAD_RESPONSE)
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
    error code as text (e.g. "131047"), or one of ours: NETWORK (nothing was sent),
    TIMEOUT and UNKNOWN_OUTCOME (sent, answer lost), HTTP_<status>, BAD_RESPONSE."""

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
    """``single_attempt``: one request, no retry and no throughput slot taken — for a
    caller that paces and retries itself (``messaging.services.messages_deliver_batch``,
    with ``max_attempts`` and ``retry_pause``)."""

    name: str
    max_attempts: int

    def send_text(self, *, to: str, body: str, reference: str, single_attempt: bool = False) -> SendResult: ...

    def send_template(
        self, *, to: str, name: str, language: str, components: list, reference: str, single_attempt: bool = False
    ) -> SendResult: ...

    def list_templates(self) -> list[dict]: ...

    def retry_pause(self, attempt: int, error: ProviderError) -> float: ...


_local = threading.local()


def shared_session() -> requests.Session:
    """The HTTP session of this thread of this process, kept between sends: its
    connection pool keeps the (TLS) connection to the Graph API alive instead of a
    handshake per message. Per thread because a Session is not documented as
    thread-safe (the batch sender's threads each get theirs); per process because a
    forked worker must not share its parent's sockets."""
    session = getattr(_local, "session", None)
    if session is None or _local.pid != os.getpid():
        session = _local.session = _new_session()
        _local.pid = os.getpid()
    return session


def _new_session() -> requests.Session:
    session = requests.Session()
    # requests reads the proxy, CA-bundle and netrc variables again on every request
    # (~0.4 ms of CPU a send, a third of its cost); read them once, here. netrc is
    # left out on purpose: the bearer token is the only credential of a Graph call.
    environment = session.merge_environment_settings(settings.WHATSAPP_GRAPH_URL, {}, None, None, None)
    session.proxies.update(environment["proxies"])
    session.verify = environment["verify"]
    session.trust_env = False
    return session


def _nothing_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether a connection error certainly happened before the request left: refused,
    unreachable, DNS failure, connect timeout. A reset or a broken pipe after the
    connection was up may come after Meta read (and accepted) the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    # NameResolutionError is a NewConnectionError; so is "connection refused".
    return isinstance(reason, NewConnectionError)


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
        timeout: tuple[float, float] | None = None,
        throttle: Callable[[], object] | None = None,
    ):
        self.phone_number_id = phone_number_id
        self.waba_id = waba_id
        self.access_token = access_token
        self.base_url = (base_url or settings.WHATSAPP_GRAPH_URL).rstrip("/")
        self._session = session
        self.max_attempts = max_attempts
        self.backoff = backoff
        # (connect, read) seconds: WHATSAPP_CONNECT_TIMEOUT, WHATSAPP_READ_TIMEOUT.
        self.timeout = timeout or (settings.WHATSAPP_CONNECT_TIMEOUT, settings.WHATSAPP_READ_TIMEOUT)
        # Called before every attempt of a message send: takes a throughput slot of the
        # number (a retry counts against Meta's cap like any send).
        self.throttle = throttle
        self._post_templates: dict[str, requests.PreparedRequest] = {}

    @property
    def session(self) -> requests.Session:
        # The calling thread's: one provider may be used from a batch sender's threads.
        return self._session or shared_session()

    @classmethod
    def for_connection(cls, connection: WhatsAppConnection, **kwargs) -> "CloudApiProvider":
        """The provider of a connection; its sends take slots of the number's cap."""
        kwargs.setdefault(
            "throttle",
            functools.partial(throughput_wait, key=connection.phone_number_id, per_second=connection.throughput_cap),
        )
        return cls(
            phone_number_id=connection.phone_number_id,
            waba_id=connection.waba_id,
            access_token=connection.access_token,
            **kwargs,
        )

    def retry_pause(self, attempt: int, error: ProviderError) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(error.retry_after or self.backoff * 2 ** (attempt - 1), 30)

    # --- HTTP ---------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        *,
        json: dict | None = None,
        params: dict | None = None,
        attempts: int | None = None,
        throttle: Callable[[], object] | None = None,
    ) -> dict:
        """One Graph API call with retries (``attempts``, default ``max_attempts``),
        ``throttle`` called before each. A POST is retried only when the request
        certainly did not reach Meta (connection refused, connect timeout, DNS) or Meta
        answered that it accepted nothing (429, 5xx, its throughput errors)."""
        if not url.startswith("http"):
            url = f"{self.base_url}/{url.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self.access_token}"}
        attempts = attempts or self.max_attempts
        session = self.session
        last_error: ProviderError | None = None
        for attempt in range(1, attempts + 1):
            if throttle is not None:
                throttle()
            try:
                if method == "POST" and json is not None:
                    response = session.send(self._prepared_post(url, json), timeout=self.timeout)
                else:
                    response = session.request(
                        method, url, json=json, params=params, headers=headers, timeout=self.timeout
                    )
            except requests.exceptions.ReadTimeout:
                # The request went out: Meta may have accepted it, so a POST is not repeated.
                if method != "GET":
                    raise ProviderError(TIMEOUT, "The Graph API did not answer in time: outcome unknown.") from None
                last_error = ProviderError(TIMEOUT, "The Graph API did not answer in time.", retryable=True)
            except requests.exceptions.ConnectionError as exc:
                if method != "GET" and not _nothing_sent(exc):
                    # Reset or broken pipe on a connection that was up: Meta may have
                    # read and accepted the request before it broke.
                    raise ProviderError(
                        UNKNOWN_OUTCOME, f"The connection broke before the Graph API answered: {exc}"[:300]
                    ) from None
                last_error = ProviderError("NETWORK", f"Could not reach the Graph API: {exc}"[:300], retryable=True)
            except requests.exceptions.RequestException as exc:  # e.g. a body cut short
                if method != "GET":
                    raise ProviderError(UNKNOWN_OUTCOME, f"The Graph API answer was lost: {exc}"[:300]) from None
                last_error = ProviderError("NETWORK", f"The Graph API answer was lost: {exc}"[:300], retryable=True)
            else:
                body = _json_or_empty(response)
                if response.ok:
                    return body
                last_error = _error_from(response, body)
                if not last_error.retryable:
                    raise last_error
            if attempt < attempts:
                time.sleep(self.retry_pause(attempt, last_error))
        raise last_error

    def _prepared_post(self, url: str, payload: dict) -> requests.PreparedRequest:
        """A POST of ``payload`` as JSON, copied from a request prepared once per URL:
        ``Session.request`` merges the session's settings into every request (~0.3 ms of
        CPU a send, a third of the client's cost at 1,000 sends a second)."""
        template = self._post_templates.get(url)
        if template is None:
            headers = {"Authorization": f"Bearer {self.access_token}", "Content-Type": "application/json"}
            template = self._post_templates[url] = self.session.prepare_request(
                requests.Request("POST", url, headers=headers)
            )
        prepared = template.copy()
        prepared.prepare_body(data=json_dumps(payload, allow_nan=False).encode(), files=None)
        return prepared

    def _message(self, payload: dict, reference: str, *, single_attempt: bool) -> SendResult:
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
            attempts=1 if single_attempt else None,
            throttle=None if single_attempt else self.throttle,
        )
        try:
            return SendResult(wamid=body["messages"][0]["id"])
        except (KeyError, IndexError, TypeError):
            # Meta answered 2xx: it may well have accepted the message.
            raise ProviderError(BAD_RESPONSE, "The Graph API answer has no message id.") from None

    # --- Provider interface -------------------------------------------------------------

    def send_text(self, *, to: str, body: str, reference: str, single_attempt: bool = False) -> SendResult:
        return self._message(
            {"to": to, "type": "text", "text": {"preview_url": False, "body": body}},
            reference,
            single_attempt=single_attempt,
        )

    def send_template(
        self, *, to: str, name: str, language: str, components: list, reference: str, single_attempt: bool = False
    ) -> SendResult:
        template = {"name": name, "language": {"code": language}}
        if components:
            template["components"] = components
        return self._message(
            {"to": to, "type": "template", "template": template}, reference, single_attempt=single_attempt
        )

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
    max_attempts = 1

    def send_text(self, *, to: str, body: str, reference: str, single_attempt: bool = False) -> SendResult:
        return SendResult(wamid=f"wamid.sandbox.{uuid.uuid4().hex}")

    def send_template(
        self, *, to: str, name: str, language: str, components: list, reference: str, single_attempt: bool = False
    ) -> SendResult:
        return SendResult(wamid=f"wamid.sandbox.{uuid.uuid4().hex}")

    def retry_pause(self, attempt: int, error: ProviderError) -> float:
        return 0.0

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
    delivery path loads it with the messages)."""
    if connection is None:
        return SandboxProvider()
    return CloudApiProvider.for_connection(connection)
