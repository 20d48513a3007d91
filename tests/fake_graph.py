"""A fake of Meta's Graph API for tests: a real HTTP server on 127.0.0.1 that answers
like the WhatsApp Cloud API, records every request, and can be told to fail.

    graph = FakeGraphServer().start()
    settings.WHATSAPP_GRAPH_URL = graph.base_url
    graph.fail_next(code=130429, status=429, times=2)   # then succeed
    graph.requests                                      # what the client sent
"""

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

API_VERSION = "v21.0"

META_ERRORS = {
    130429: "(#130429) Rate limit hit",
    131047: "Re-engagement message",
    131050: "User has stopped marketing messages",
    131026: "Message undeliverable",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    190: "Error validating access token: Session has expired",
    100: "Invalid parameter",
}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    headers: dict
    json: dict | None


@dataclass
class Failure:
    status: int
    code: int | None
    delay: float = 0.0
    body: str | None = None


@dataclass
class FakeGraphState:
    access_token: str = "test-access-token"
    phone_numbers: dict = field(default_factory=dict)  # id → {display_phone_number, verified_name}
    templates: dict = field(default_factory=dict)  # waba id → [template dicts]
    requests: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    latency: float = 0.0


class FakeGraphServer:
    def __init__(self):
        self.state = FakeGraphState()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # --- control ------------------------------------------------------------------------

    def start(self) -> "FakeGraphServer":
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-graph", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/{API_VERSION}"

    def reset(self) -> None:
        with self._lock:
            self.state = FakeGraphState()

    def add_phone_number(self, phone_number_id: str, display: str = "+1 555-010-0000", name: str = "Acme") -> None:
        self.state.phone_numbers[phone_number_id] = {"display_phone_number": display, "verified_name": name}

    def set_templates(self, waba_id: str, templates: list[dict]) -> None:
        self.state.templates[waba_id] = templates

    def fail_next(
        self,
        *,
        code: int | None = 131026,
        status: int = 400,
        times: int = 1,
        delay: float = 0.0,
        body: str | None = None,
    ) -> None:
        """The next ``times`` requests answer this error (after ``delay`` seconds)."""
        with self._lock:
            self.state.failures.extend(Failure(status=status, code=code, delay=delay, body=body) for _ in range(times))

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.state.requests)

    def sent_messages(self) -> list[dict]:
        """The bodies of the message sends that Meta accepted or refused."""
        return [r.json for r in self.requests if r.method == "POST" and r.path.endswith("/messages")]

    # --- answers ------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict, headers: dict, body: dict | None):
        with self._lock:
            self.state.requests.append(RecordedRequest(method, path, query, headers, body))
            failure = self.state.failures.pop(0) if self.state.failures else None
            latency = self.state.latency
        if latency:
            time.sleep(latency)
        if failure:
            if failure.delay:
                time.sleep(failure.delay)
            if failure.body is not None:
                return failure.status, failure.body
            return failure.status, _error(failure.code)
        if headers.get("authorization") != f"Bearer {self.state.access_token}":
            return 401, _error(190)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == API_VERSION:
            parts = parts[1:]
        if method == "POST" and len(parts) == 2 and parts[1] == "messages":
            return self._send(parts[0], body or {})
        if method == "GET" and len(parts) == 2 and parts[1] == "message_templates":
            return self._templates(parts[0], query)
        if method == "GET" and len(parts) == 1 and parts[0] in self.state.phone_numbers:
            return 200, {"id": parts[0], **self.state.phone_numbers[parts[0]]}
        return 400, _error(100)

    def _send(self, phone_number_id: str, body: dict):
        if (
            body.get("messaging_product") != "whatsapp"
            or not body.get("to")
            or body.get("type")
            not in (
                "text",
                "template",
            )
        ):
            return 400, _error(100)
        wamid = f"wamid.FAKE{next(self._ids):08d}"
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body["to"], "wa_id": body["to"]}],
            "messages": [{"id": wamid}],
        }

    def _templates(self, waba_id: str, query: dict):
        templates = self.state.templates.get(waba_id, [])
        limit = int(query.get("limit", ["25"])[0])
        start = int(query.get("after", ["0"])[0])
        page = templates[start : start + limit]
        answer = {"data": page, "paging": {"cursors": {"before": str(start), "after": str(start + len(page))}}}
        if start + limit < len(templates):
            answer["paging"]["next"] = (
                f"{self.base_url}/{waba_id}/message_templates?limit={limit}&after={start + limit}"
            )
        return 200, answer


def _error(code: int | None) -> dict:
    return {
        "error": {
            "message": META_ERRORS.get(code, "Unknown error"),
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": META_ERRORS.get(code, "")},
            "fbtrace_id": "AbCdEfGh",
        }
    }


def _handler_for(fake: FakeGraphServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _serve(self, method: str):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {key.lower(): value for key, value in self.headers.items()}
            status, answer = fake._answer(method, url.path, parse_qs(url.query), headers, body)
            payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

        def do_DELETE(self):
            self._serve("DELETE")

    return Handler
