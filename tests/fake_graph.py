"""A fake of Meta's Graph API for tests: a real HTTP server on 127.0.0.1 that answers
like the WhatsApp Cloud API, records every request, and can be told to fail.

    graph = FakeGraphServer().start()
    settings.WHATSAPP_GRAPH_URL = graph.base_url
    graph.fail_next(code=130429, status=429, times=2)   # then succeed
    graph.fail_next(drop=True)                          # read the request, then reset the connection
    graph.requests                                      # what the client sent, when, and the answer

Like Meta under load (options, also of the constructor; kept by ``reset``):

    graph.set_rate_cap("1234", 80)    # sends of number 1234 above 80 in a wall-clock second: 130429
    graph.fail_randomly(0.01)         # 1% of the sends answer a transient 500

HTTP/1.1 with keep-alive, a thread per connection (so ``latency`` and failure delays
hold up only their own connection), and a request parser of its own: the standard
library's ``http.server`` spends ~0.3 ms of CPU a request parsing headers through the
email package, which made the fake, not the client, the bottleneck of the send
benchmark (bench/send_throughput.py). Answers go out in one segment, Nagle off.
"""

import contextlib
import itertools
import json
import random
import socket
import socketserver
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

API_VERSION = "v21.0"

META_ERRORS = {
    130429: "(#130429) Rate limit hit",
    131047: "Re-engagement message",
    131050: "User has stopped marketing messages",
    131026: "Message undeliverable",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131057: "Account in maintenance mode",
    2: "Service temporarily unavailable",
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
    at: float = 0.0  # time.time() when it arrived
    status: int | None = None  # the HTTP status answered (None: not yet, or dropped)
    code: int | None = None  # Meta's error code answered, if any


@dataclass
class Failure:
    status: int
    code: int | None
    delay: float = 0.0
    body: str | None = None
    drop: bool = False  # no answer: the connection is reset after the request was read


# What ``_answer`` returns for a request whose connection is to be reset unanswered.
DROP = object()


@dataclass
class FakeGraphState:
    access_token: str = "test-access-token"
    phone_numbers: dict = field(default_factory=dict)  # id → {display_phone_number, verified_name}
    templates: dict = field(default_factory=dict)  # waba id → [template dicts]
    requests: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    latency: float = 0.0
    # Like Meta: phone number id -> sends allowed per wall-clock second (130429 above).
    rate_caps: dict = field(default_factory=dict)
    fail_rate: float = 0.0  # this fraction of the sends answer ``fail_status`` (transient)
    fail_status: int = 500
    _seconds: dict = field(default_factory=dict)  # phone number id -> (second, sends counted)


class FakeGraphServer:
    def __init__(
        self,
        *,
        rate_caps: dict | None = None,
        fail_rate: float = 0.0,
        fail_status: int = 500,
        seed: int | None = None,
    ):
        """``rate_caps`` (phone number id -> messages a second) and ``fail_rate`` (a
        fraction of the sends answered ``fail_status``, Meta's transient error) behave
        as ``set_rate_cap`` and ``fail_randomly``; ``seed`` makes the failures repeatable."""
        self._options = {"rate_caps": dict(rate_caps or {}), "fail_rate": fail_rate, "fail_status": fail_status}
        self._random = random.Random(seed)
        self.state = self._fresh_state()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: _Server | None = None

    def _fresh_state(self) -> FakeGraphState:
        options = self._options
        return FakeGraphState(
            rate_caps=dict(options["rate_caps"]), fail_rate=options["fail_rate"], fail_status=options["fail_status"]
        )

    # --- control ------------------------------------------------------------------------

    def start(self) -> "FakeGraphServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
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
        """Forgets the requests, failures and phone numbers; the rate caps and the
        random failure rate stay as last set."""
        with self._lock:
            self.state = self._fresh_state()

    def set_rate_cap(self, phone_number_id: str, per_second: int | None) -> None:
        """Sends from this number above ``per_second`` within one wall-clock second
        answer HTTP 400 with Meta's error 130429 (None: no cap)."""
        with self._lock:
            if per_second is None:
                self._options["rate_caps"].pop(phone_number_id, None)
                self.state.rate_caps.pop(phone_number_id, None)
            else:
                self._options["rate_caps"][phone_number_id] = per_second
                self.state.rate_caps[phone_number_id] = per_second

    def fail_randomly(self, rate: float, *, status: int = 500) -> None:
        """This fraction of the message sends (within the cap) answer ``status`` with
        Meta's transient error body: nothing was accepted, trying again may work."""
        with self._lock:
            self._options.update(fail_rate=rate, fail_status=status)
            self.state.fail_rate, self.state.fail_status = rate, status

    def add_phone_number(
        self, phone_number_id: str, display: str = "+1 555-010-0000", name: str = "Acme", quality: str = "GREEN"
    ) -> None:
        self.state.phone_numbers[phone_number_id] = {
            "display_phone_number": display,
            "verified_name": name,
            "quality_rating": quality,
        }

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
        drop: bool = False,
    ) -> None:
        """The next ``times`` requests answer this error (after ``delay`` seconds); with
        ``drop``, they are read and recorded, then the connection is reset without an
        answer (the client can't know whether Meta accepted them)."""
        with self._lock:
            self.state.failures.extend(
                Failure(status=status, code=code, delay=delay, body=body, drop=drop) for _ in range(times)
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self.state.requests)

    def sent_messages(self) -> list[dict]:
        """The bodies of the message sends that Meta accepted or refused."""
        return [r.json for r in self.requests if r.method == "POST" and r.path.endswith("/messages")]

    def send_requests(self) -> list[RecordedRequest]:
        """The message sends, with their arrival times and answers."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith("/messages")]

    def accepted_messages(self) -> list[dict]:
        """The bodies of the message sends that Meta accepted (answered 200)."""
        return [r.json for r in self.send_requests() if r.status == 200]

    def answers(self) -> Counter:
        """How many message sends got each answer: (HTTP status, Meta error code or None)."""
        return Counter((r.status, r.code) for r in self.send_requests())

    # --- answers ------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict, headers: dict, body: dict | None):
        record = RecordedRequest(method, path, query, headers, body, at=time.time())
        outcome = self._outcome(record)
        if outcome is not DROP:
            status, answer = outcome
            record.status = status
            error = answer.get("error") if isinstance(answer, dict) else None
            record.code = error.get("code") if isinstance(error, dict) else None
        return outcome

    def _outcome(self, record: RecordedRequest):
        method, path, query, headers, body = record.method, record.path, record.query, record.headers, record.json
        with self._lock:
            self.state.requests.append(record)
            failure = self.state.failures.pop(0) if self.state.failures else None
            latency = self.state.latency
        if latency:
            time.sleep(latency)
        if failure:
            if failure.delay:
                time.sleep(failure.delay)
            if failure.drop:
                return DROP
            if failure.body is not None:
                return failure.status, failure.body
            return failure.status, _error(failure.code)
        if headers.get("authorization") != f"Bearer {self.state.access_token}":
            return 401, _error(190)
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == API_VERSION:
            parts = parts[1:]
        if method == "POST" and len(parts) == 2 and parts[1] == "messages":
            refusal = self._throttle(parts[0], record.at)
            if refusal:
                return refusal
            return self._send(parts[0], body or {})
        if method == "GET" and len(parts) == 2 and parts[1] == "message_templates":
            return self._templates(parts[0], query)
        if method == "GET" and len(parts) == 1 and parts[0] in self.state.phone_numbers:
            return 200, {"id": parts[0], **self.state.phone_numbers[parts[0]]}
        return 400, _error(100)

    def _throttle(self, phone_number_id: str, arrived: float):
        """Meta's answer to a send over the number's cap in this wall-clock second
        (every send counts, answered or refused), or to one of the randomly failed."""
        with self._lock:
            state = self.state
            cap = state.rate_caps.get(phone_number_id)
            if cap is not None:
                second = int(arrived)
                last, count = state._seconds.get(phone_number_id, (second, 0))
                count = count + 1 if last == second else 1
                state._seconds[phone_number_id] = (second, count)
                if count > cap:
                    return 400, _error(130429)
            if state.fail_rate and self._random.random() < state.fail_rate:
                return state.fail_status, _error(2, transient=True)
        return None

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


def _error(code: int | None, *, transient: bool = False) -> dict:
    error = {
        "message": META_ERRORS.get(code, "Unknown error"),
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": META_ERRORS.get(code, "")},
        "fbtrace_id": "AbCdEfGh",
    }
    if transient:
        error["is_transient"] = True
    return {"error": error}


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128
    fake: FakeGraphServer


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive: request line, headers and a Content-Length body, which
    is all the Cloud API client sends."""

    disable_nagle_algorithm = True
    wbufsize = 0  # each answer is written in one call

    def handle(self) -> None:
        with contextlib.suppress(OSError):  # the client went away (reset, closed mid-request)
            self._serve(self.server.fake)

    def _serve(self, fake: FakeGraphServer) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                self._write(400, b"{}", keep_alive=False)
                return
            method, target, version = parts
            headers: dict[str, str] = {}
            while True:
                header = self.rfile.readline(65537)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            url = urlsplit(target)
            outcome = fake._answer(method, url.path, parse_qs(url.query), headers, body)
            if outcome is DROP:
                # RST, not FIN: the connection breaks as a crashed peer's would.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            status, answer = outcome
            payload = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            self._write(status, payload, keep_alive=keep_alive)
            if not keep_alive:
                return

    def _write(self, status: int, payload: bytes, *, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        connection = "" if keep_alive else "Connection: close\r\n"
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{connection}\r\n"
        )
        self.wfile.write(head.encode("latin-1") + payload)
