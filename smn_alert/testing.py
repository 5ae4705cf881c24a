"""``FakeSMNServer``: a real HTTP server on 127.0.0.1 that answers like Huawei Cloud SMN, for tests and demos.

It checks AK/SK signatures (or an ``X-Auth-Token``) like the API gateway, validates bodies by the rules of
the SmsBatchPublish page, answers per-number results, records what it accepted, and fails on command.
Only the standard library is used, so importing it never imports ``requests``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import re
import selectors
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Callable, Literal
from urllib.parse import unquote, urlsplit

from smn_alert import fields, signer
from smn_alert.errors import SMNConfigError

__all__ = [
    "DEFAULT_AK",
    "DEFAULT_PROJECT_ID",
    "DEFAULT_SK",
    "FakeSMNServer",
    "ReceivedMessage",
    "ReceivedRequest",
]

#: Project id the fake serves unless told otherwise (32 hex characters, like a real one).
DEFAULT_PROJECT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
#: Access key the fake accepts unless told otherwise.
DEFAULT_AK = "FAKEAKSMNALERT0000000"
#: Secret key the fake verifies signatures with unless told otherwise (not a secret: a test value).
DEFAULT_SK = "fake-sk-smn-alert-0000000000000000000000"
#: Seconds an ``X-Sdk-Date`` may be off the server's clock (the gateway allows 15 minutes).
DEFAULT_CLOCK_SKEW_LIMIT = 900.0
#: Consecutive bad signatures after which the gateway locks an access key.
DEFAULT_LOCK_AFTER = 5
#: Seconds an access key stays locked.
DEFAULT_LOCK_SECONDS = 300.0
#: Largest request body read; a bigger one is refused with 400 and the connection closed.
DEFAULT_MAX_BODY_BYTES = 1 << 20

_JSON = "application/json;charset=UTF-8"
_REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "x-auth-token", "x-security-token"})
_TOPIC_FORBIDDEN = ("[", "]", "【", "】")
_SMS_PATH = re.compile(r"/v2/([^/]+)/notifications/sms")
_TOPIC_PATH = re.compile(r"/v2/([^/]+)/notifications/topics/([^/]+)/publish")
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")
# The fake's own choice for "a field or the body is ill-formed"; real SMN has a code per field.
_CODE_INVALID = "SMN.0004"


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the fake accepted (answered 200) and would have delivered.

    Attributes:
        message: The text as sent.
        endpoints: The numbers in the request, in order, duplicates included; ``()`` for a topic.
        delivered: The numbers that got a ``message_id``, in order.
        refused: ``(endpoint, code)`` for each entry that got an error code (duplicates, invalid, refused).
        topic_urn: The decoded topic URN for a topic publish, else ``None``.
        subject, sign_id, message_include_sign_flag, extend_code, extend_src_id: As sent, or ``None``.
        received_at: Wall-clock time (``time.time()`` scale) the request arrived.
        request_id: The request id the fake answered with.
    """

    message: str
    endpoints: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()
    topic_urn: str | None = None
    subject: str | None = None
    sign_id: str | None = None
    message_include_sign_flag: str | None = None
    extend_code: str | None = None
    extend_src_id: str | None = None
    received_at: float = 0.0
    request_id: str = ""


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request the fake read, whatever became of it.

    Attributes:
        method: ``POST``, ``GET`` ...
        path: The request target as received (percent-encoded path and query).
        headers: Header names in lower case; credential headers show ``<redacted>``.
        body: The body bytes.
        status: The status answered; ``None`` while in flight or when the connection was closed unanswered.
        received_at: Wall-clock time (``time.time()`` scale) the request arrived.
        request_id: The ``X-Request-Id`` the fake answered (or would have answered) with.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    received_at: float
    request_id: str


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_id: str
    received_at: float


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: close the connection without answering
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    code: str | None = None  # the error code answered, for diagnostics


@dataclass
class _Fault:
    kind: str  # "fail", "malformed" or "close"
    remaining: int
    status: int = 200
    code: str = ""
    message: str = ""
    shape: str = "smn"
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = ""

    def answer(self, request_id: str) -> _Answer:
        """Build the answer this fault gives in place of the real one."""
        if self.kind == "close":
            return _Answer(None)
        if self.kind == "malformed":
            return _Answer(self.status, self.body, self.content_type)
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        refusal = _Refusal(self.status, self.code, self.message, gateway=self.shape == "gateway")
        return replace(refusal.answer(request_id), headers=headers)


class _Slot:
    """Holds a request record that is replaced once the answer is known."""

    def __init__(self, record: ReceivedRequest) -> None:
        self.record = record
        self.code: str | None = None

    def describe(self) -> str:
        """``POST /v2/.../sms -> 401 APIG.0301``, for a failing test's message."""
        answered = "no answer" if self.record.status is None else str(self.record.status)
        code = f" {self.code}" if self.code else ""
        return f"{self.record.method} {urlsplit(self.record.path).path} -> {answered}{code}"


class _Refusal(Exception):
    """An error answer: SMN's body shape, or the gateway's when ``gateway`` is true."""

    def __init__(self, status: int, code: str, message: str, gateway: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.gateway = status, code, message, gateway

    def answer(self, request_id: str) -> _Answer:
        if self.gateway:
            payload = {"error_code": self.code, "error_msg": self.message, "request_id": request_id}
        else:
            payload = {"request_id": request_id, "code": self.code, "message": self.message}
        return replace(_json_answer(self.status, payload), code=self.code)


def _json_answer(status: int, payload: object) -> _Answer:
    return _Answer(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def _auth_refusal(why: str) -> _Refusal:
    return _Refusal(401, "APIG.0301", f"Incorrect IAM authentication information: {why}", gateway=True)


def _new_id() -> str:
    return uuid.uuid4().hex


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (``compare_digest`` on str does not)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


class _Authenticator:
    """The gateway's checks: token or AK/SK signature, date skew, lock-out after repeated bad signatures."""

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        auth_token: str | None,
        skew_limit: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self._ak, self._sk, self._token = ak, sk, auth_token
        self._skew_limit, self._clock, self._wall_clock = skew_limit, clock, wall_clock
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, req: _Request) -> None:
        """Return if ``req`` is authenticated, else raise the gateway's 401 refusal."""
        token = req.headers.get("x-auth-token")
        if token is not None:
            if self._token is None or not _same(token, self._token):
                raise _auth_refusal("the X-Auth-Token is not valid")
            return
        parsed = signer.parse_authorization(req.headers.get("authorization", ""))
        if parsed is None:
            raise _auth_refusal("no SDK-HMAC-SHA256 Authorization header and no X-Auth-Token")
        access = parsed["Access"]
        with self._lock:
            self._refuse_if_locked(access)
            problem = self._problem(parsed, req)
            self._count(access, problem)
        if problem is not None:
            raise _auth_refusal(problem)

    def _refuse_if_locked(self, access: str) -> None:
        until = self._locked_until.get(access)
        if until is None:
            return
        if self._clock() < until:
            raise _auth_refusal(
                f"the access key is locked after {DEFAULT_LOCK_AFTER} consecutive failed signatures; "
                f"try again in {until - self._clock():.0f} s"
            )
        del self._locked_until[access]
        self._failures.pop(access, None)

    def _count(self, access: str, problem: str | None) -> None:
        if problem is None:
            self._failures.pop(access, None)
            return
        count = self._failures.get(access, 0) + 1
        self._failures[access] = count
        if count >= DEFAULT_LOCK_AFTER:
            self._locked_until[access] = self._clock() + DEFAULT_LOCK_SECONDS

    def _problem(self, parsed: Mapping[str, str], req: _Request) -> str | None:
        """Say what is wrong with the signature, or ``None`` when it is right."""
        if not _same(parsed["Access"], self._ak):
            return "the access key is unknown"
        signed = [name for name in parsed["SignedHeaders"].lower().split(";") if name]
        required = {"content-type", "host", "x-sdk-date"} | ({"x-project-id"} & req.headers.keys())
        missing = sorted(required - set(signed)) + sorted(set(signed) - req.headers.keys())
        if missing:
            return f"headers not signed or not sent: {', '.join(missing)}"
        date_problem = self._date_problem(req.headers["x-sdk-date"])
        if date_problem is not None:
            return date_problem
        headers = {name: req.headers[name] for name in signed}
        expected, _ = signer.signature(self._sk, req.method, req.target, headers, req.body, signed)
        return None if _same(parsed["Signature"], expected) else "verify aksk signature fail"

    def _date_problem(self, value: str) -> str | None:
        try:
            moment = datetime.strptime(value, signer.DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            return f"X-Sdk-Date {value[:20]!r} is not in {signer.DATE_FORMAT} form"
        if abs(self._wall_clock() - moment.timestamp()) > self._skew_limit:
            return f"X-Sdk-Date is more than {self._skew_limit:g} s off the server's clock"
        return None


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _Refusal(400, _CODE_INVALID, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _Refusal(400, _CODE_INVALID, "The request body must be a JSON object.")
    return data


def _checked(status: int, code: str, check: Callable[[], Any]) -> Any:
    """Run a ``fields`` check and turn its ``SMNConfigError`` into an SMN error answer."""
    try:
        return check()
    except SMNConfigError as exc:
        raise _Refusal(status, code, str(exc)) from None


def _check_endpoints(value: object) -> list[str]:
    if not (isinstance(value, list) and value and all(isinstance(item, str) for item in value)):
        raise _Refusal(
            400, "SMN.0012", "Parameter: endpoints must be a non-empty list of phone-number strings."
        )
    if len(value) > fields.MAX_ENDPOINTS_PER_REQUEST:
        raise _Refusal(
            400,
            "SMN.0159",
            f"{len(value)} endpoints; at most {fields.MAX_ENDPOINTS_PER_REQUEST} per request.",
        )
    return value


def _check_flag(value: object) -> str | None:
    if isinstance(value, bool):
        raise _Refusal(
            400,
            _CODE_INVALID,
            'message_include_sign_flag must be the string "true" or "false", not a JSON boolean.',
        )
    if value is not None and value not in ("true", "false"):
        raise _Refusal(400, _CODE_INVALID, 'message_include_sign_flag must be the string "true" or "false".')
    return value


def _check_sms(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a SmsBatchPublish body by the seed's rules; return its fields."""
    endpoints = _check_endpoints(data.get("endpoints"))
    message = _checked(403, "SMN.0009", lambda: fields.check_message(data.get("message")))
    flag, sign_id = _check_flag(data.get("message_include_sign_flag")), data.get("sign_id")
    if flag == "true" and not _SIGNATURE_HEAD.match(message):
        raise _Refusal(
            403, "SMN.0009", 'With message_include_sign_flag "true" the message must start with 【sign】.'
        )
    if flag != "true" or sign_id is not None:
        _checked(400, "SMN.0080", lambda: fields.check_sign(sign_id, None))
    extend_code = _checked(400, _CODE_INVALID, lambda: fields.check_extend_code(data.get("extend_code")))
    src_id = data.get("extend_src_id")
    if src_id is not None and not isinstance(src_id, str):
        raise _Refusal(400, _CODE_INVALID, "extend_src_id must be a string of 1 to 8 digits.")
    _checked(400, _CODE_INVALID, lambda: fields.check_extend_src_id(src_id))
    return {
        "endpoints": tuple(endpoints), "message": message, "sign_id": sign_id,
        "message_include_sign_flag": flag, "extend_code": extend_code, "extend_src_id": src_id,
    }  # fmt: skip


def _check_topic(urn: str, project_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a topic publish by SMN's rules for topics with SMS subscribers; return its fields."""
    try:
        fields.check_topic_urn(urn)
    except SMNConfigError:
        raise _Refusal(404, "SMN.0006", "Topic not found.") from None
    if urn.split(":")[3] != project_id:
        raise _Refusal(404, "SMN.0006", "Topic not found.")
    message = _checked(403, "SMN.0009", lambda: fields.check_message(data.get("message")))
    if any(char in message for char in _TOPIC_FORBIDDEN):
        raise _Refusal(400, _CODE_INVALID, "A message published to a topic must not contain [ ] 【 】.")
    subject = _checked(400, _CODE_INVALID, lambda: fields.check_subject(data.get("subject")))
    return {"topic_urn": urn, "message": message, "subject": subject}


def _endpoint_result(endpoint: str, refused: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    try:
        fields.check_endpoint(endpoint)
    except SMNConfigError:
        return {"endpoint": endpoint, "code": "SMN.0160", "message": "Invalid phone number."}
    if endpoint in refused:
        code, message = refused[endpoint]
        return {"endpoint": endpoint, "code": code, "message": message}
    return {"endpoint": endpoint, "message_id": _new_id()}


def _sms_results(endpoints: tuple[str, ...], refused: Mapping[str, tuple[str, str]]) -> list[dict[str, str]]:
    """One result per endpoint, in order; a repeated number gets SMN.0190 like the seed's sample answer."""
    seen: set[str] = set()
    results = []
    for endpoint in endpoints:
        if endpoint in seen:
            results.append(
                {"endpoint": endpoint, "code": "SMN.0190", "message": "This endpoint already exists."}
            )
        else:
            seen.add(endpoint)
            results.append(_endpoint_result(endpoint, refused))
    return results


def _retry_after_text(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class FakeSMNServer:
    """A local HTTP server that behaves like SMN's SMS batch publish and topic publish APIs.

    Start it (``with FakeSMNServer() as smn:`` or ``start()``/``stop()``), give ``smn.settings()`` to the
    client or handler, send, then look at ``messages`` and ``requests``. The error answers it gives:

    ====  =========  ==================================================================================
    401   APIG.0301  gateway body: bad or missing signature or token, date skew, locked access key
    403   SMN.0001   the project id in the path or ``X-Project-Id`` is not the server's
    403   SMN.0009   message missing, empty, over 490 characters, or flag ``"true"`` without ``【sign】``
    400   SMN.0012   ``endpoints`` missing, empty, or not a list of strings
    400   SMN.0159   more than 1000 endpoints
    400   SMN.0080   ``sign_id`` missing (unless the flag is ``"true"``) or malformed
    400   SMN.0004   body not a JSON object, flag not a string, ``extend_code``, ``extend_src_id``,
                     ``subject``, ``[]``/``【】`` in a topic message (the fake's code; SMN has one per field)
    404   SMN.0006   topic URN malformed or of another project ("Topic not found.")
    404   APIG.0101  no such API (SMN body shape)
    500   SMN.0016   the fake itself failed: a bug, please report it
    ====  =========  ==================================================================================

    Faults queued with ``fail_next``, ``malformed_next`` and ``close_next`` apply to the next requests,
    whatever they are, in the order they were queued and before authentication. ``delay`` and ``refuse``
    are standing settings applied alongside. ``reset_faults()`` removes all of them.
    """

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        ak: str = DEFAULT_AK,
        sk: str = DEFAULT_SK,
        auth_token: str | None = None,
        check_signature: bool = True,
        clock_skew_limit: float = DEFAULT_CLOCK_SKEW_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the server; nothing is bound until :meth:`start`.

        Args:
            project_id: The project id in the paths the server answers.
            ak: The access key accepted in signatures.
            sk: The secret key signatures are verified with.
            auth_token: A token accepted in ``X-Auth-Token``; ``None`` refuses every token.
            check_signature: ``False`` accepts requests without any authentication.
            clock_skew_limit: Seconds ``X-Sdk-Date`` may be off ``wall_clock``.
            clock: Monotonic clock for the access-key lock-out.
            wall_clock: ``time.time``-like clock for ``X-Sdk-Date`` checks and ``received_at``.
        """
        self.project_id, self.ak, self._sk = project_id, ak, sk
        self._check_signature, self._wall_clock = check_signature, wall_clock
        self._auth = _Authenticator(
            ak, sk, auth_token=auth_token, skew_limit=clock_skew_limit, clock=clock, wall_clock=wall_clock
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[ReceivedMessage] = []
        self._requests: list[_Slot] = []
        self._faults: deque[_Fault] = deque()
        self._delay: tuple[float, int | None] | None = None
        self._refused: dict[str, tuple[str, str]] = {}
        self._stopping = threading.Event()
        self._life_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # --- life cycle -------------------------------------------------------------------------------------
    def start(self) -> FakeSMNServer:
        """Bind a free port on 127.0.0.1 and serve on a daemon thread.

        Returns:
            ``self``, so ``server = FakeSMNServer().start()`` works.

        Raises:
            RuntimeError: If the server is already running.
        """
        with self._life_lock:
            if self._server is not None:
                raise RuntimeError("FakeSMNServer is already running")
            self._stopping.clear()
            server = _Server(self)
            self._server, self._port = server, server.server_port
            self._thread = threading.Thread(
                target=server.serve_until, args=(self._stopping,), name="FakeSMNServer", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut open connections and join the threads within ``timeout`` seconds.

        A request being delayed is abandoned: its connection is closed without an answer. Calling
        ``stop()`` again, or on a server never started, does nothing.
        """
        with self._life_lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()  # wakes delayed requests at once
        server.wake()
        thread.join(max(0.0, deadline - time.monotonic()))
        server.close_connections(deadline)
        server.server_close()

    def __enter__(self) -> FakeSMNServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; still answers after ``stop()`` (then nothing listens there)."""
        if self._port is None:
            raise RuntimeError("FakeSMNServer is not started: call start() or use it in a with block")
        return f"http://127.0.0.1:{self._port}"

    def settings(self) -> dict[str, str]:
        """Keyword arguments pointing a client or handler at this server: project_id, endpoint_url, ak, sk."""
        return {"project_id": self.project_id, "endpoint_url": self.url, "ak": self.ak, "sk": self._sk}

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"FakeSMNServer({where}, project_id={self.project_id!r}, ak={self.ak!r})"

    # --- records ----------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages accepted so far (answered 200), oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request read so far, oldest first, including refused, faulted and in-flight ones."""
        with self._lock:
            return [slot.record for slot in self._requests]

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages were accepted; return all accepted messages.

        Raises:
            AssertionError: If fewer arrived within ``timeout`` seconds; the message lists the last requests
                and what they were answered, so a failing test says why (a 401, a 400 ...).
        """
        self._wait(lambda: len(self._messages) >= n, timeout, f"{n} accepted message(s)")
        return self.messages

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests were read (answered or not); return them all.

        Raises:
            AssertionError: If fewer arrived within ``timeout`` seconds.
        """
        self._wait(lambda: len(self._requests) >= n, timeout, f"{n} request(s)")
        return self.requests

    def clear(self) -> None:
        """Forget recorded messages and requests (faults stay; see :meth:`reset_faults`)."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "; ".join(slot.describe() for slot in self._requests[-10:]) or "none"
                    raise AssertionError(
                        f"FakeSMNServer: expected {what} within {timeout:g} s, got {len(self._messages)} "
                        f"message(s) from {len(self._requests)} request(s); last requests: {seen}"
                    )
                self._changed.wait(remaining)

    # --- faults -----------------------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        code: str = "SMN.0016",
        message: str = "Service unavailable, please try again later.",
        retry_after: float | str | None = None,
        shape: Literal["smn", "gateway"] = "smn",
    ) -> None:
        """Answer the next ``n`` requests with an error instead of serving them.

        Args:
            n: How many requests fail.
            status: The HTTP status (503, 429, 500 ...).
            code: SMN's ``code`` or the gateway's ``error_code``.
            message: SMN's ``message`` or the gateway's ``error_msg``.
            retry_after: Sent as ``Retry-After``: seconds, or a string such as an HTTP date.
            shape: ``"smn"`` for ``{"request_id", "code", "message"}``, ``"gateway"`` for
                ``{"error_code", "error_msg", "request_id"}``.
        """
        if shape not in ("smn", "gateway"):
            raise ValueError(f"shape must be 'smn' or 'gateway', not {shape!r}")
        self._queue(_Fault("fail", n, status, code, message, shape, _retry_after_text(retry_after)))

    def malformed_next(
        self, n: int = 1, *, status: int = 200, body: bytes = b"not json", content_type: str = "text/html"
    ) -> None:
        """Answer the next ``n`` requests with ``body`` as is (a proxy's HTML page, truncated JSON ...)."""
        self._queue(_Fault("malformed", n, status, body=body, content_type=content_type))

    def close_next(self, n: int = 1) -> None:
        """Read each of the next ``n`` requests, then close the connection without answering."""
        self._queue(_Fault("close", n))

    def delay(self, seconds: float, n: int | None = None) -> None:
        """Wait ``seconds`` before answering each of the next ``n`` requests (all of them when ``None``).

        It replaces any earlier delay. ``stop()`` interrupts a delay and closes that connection unanswered.
        """
        if seconds < 0 or (n is not None and n < 1):
            raise ValueError("seconds must be >= 0 and n, when given, >= 1")
        with self._lock:
            self._delay = (seconds, n)

    def refuse(
        self, endpoint: str, code: str = "SMN.0160", message: str = "Refused by FakeSMNServer.refuse()."
    ) -> None:
        """Give ``endpoint`` an error entry (``code``, ``message``) in every batch answer until reset."""
        with self._lock:
            self._refused[endpoint] = (code, message)

    def reset_faults(self) -> None:
        """Drop queued faults, the delay and refused numbers."""
        with self._lock:
            self._faults.clear()
            self._delay = None
            self._refused.clear()

    def _queue(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"n must be at least 1, not {fault.remaining}")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.popleft()
            return fault

    def _take_delay(self) -> float:
        with self._lock:
            if self._delay is None:
                return 0.0
            seconds, remaining = self._delay
            if remaining is not None:
                self._delay = (seconds, remaining - 1) if remaining > 1 else None
            return seconds

    # --- serving (on the connection's thread) -----------------------------------------------------------
    def _handle(self, req: _Request) -> _Answer:
        """Record ``req``, work out its answer and record the status."""
        headers = {
            name: _REDACTED if name in _SECRET_HEADERS else value for name, value in req.headers.items()
        }
        record = ReceivedRequest(
            req.method, req.target, headers, req.body, None, req.received_at, req.request_id
        )
        slot = _Slot(record)
        with self._changed:
            self._requests.append(slot)
            self._changed.notify_all()
        answer = self._answer(req)
        with self._changed:
            slot.record, slot.code = replace(slot.record, status=answer.status), answer.code
            self._changed.notify_all()
        return answer

    def _answer(self, req: _Request) -> _Answer:
        delay = self._take_delay()
        if delay and self._stopping.wait(delay):
            return _Answer(None)
        fault = self._take_fault()
        if fault is not None:
            return fault.answer(req.request_id)
        try:
            return self._route(req)
        except _Refusal as refusal:
            return refusal.answer(req.request_id)
        except Exception:  # a test server answers like a server; it must not kill the connection thread
            return _Refusal(500, "SMN.0016", "FakeSMNServer failed on this request (a bug).").answer(
                req.request_id
            )

    def _route(self, req: _Request) -> _Answer:
        path = urlsplit(req.target).path
        sms, topic = _SMS_PATH.fullmatch(path), _TOPIC_PATH.fullmatch(path)
        found = sms or topic
        if req.method != "POST" or found is None:
            raise _Refusal(404, "APIG.0101", f"The API does not exist: {req.method} {path[:120]}")
        if self._check_signature:
            self._auth.check(req)
        self._check_project(unquote(found.group(1)), req.headers.get("x-project-id"))
        data = _json_object(req.body)
        if sms is not None:
            return self._accept_sms(_check_sms(data), req)
        return self._accept_topic(_check_topic(unquote(found.group(2)), self.project_id, data), req)

    def _check_project(self, in_path: str, in_header: str | None) -> None:
        for where, value in (("path", in_path), ("X-Project-Id header", in_header)):
            if value is not None and value != self.project_id:
                raise _Refusal(
                    403, "SMN.0001", f"Project id {value[:64]!r} in the {where} is not this server's "
                    f"project id {self.project_id!r}."
                )  # fmt: skip

    def _accept_sms(self, sms: dict[str, Any], req: _Request) -> _Answer:
        with self._lock:
            refused = dict(self._refused)
        results = _sms_results(sms["endpoints"], refused)
        self._record(ReceivedMessage(
            delivered=tuple(entry["endpoint"] for entry in results if "message_id" in entry),
            refused=tuple((entry["endpoint"], entry["code"]) for entry in results if "code" in entry),
            received_at=req.received_at, request_id=req.request_id, **sms,
        ))  # fmt: skip
        return _json_answer(200, {"request_id": req.request_id, "result": results})

    def _accept_topic(self, topic: dict[str, Any], req: _Request) -> _Answer:
        self._record(ReceivedMessage(received_at=req.received_at, request_id=req.request_id, **topic))
        return _json_answer(200, {"request_id": req.request_id, "message_id": _new_id()})

    def _record(self, message: ReceivedMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()


class _Server(ThreadingHTTPServer):
    """The HTTP server; it tracks its connections so that ``stop()`` can cut them and join their threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many senders at once must not overflow the listen backlog

    def __init__(self, fake: FakeSMNServer) -> None:
        self.fake = fake
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._waker, self._wakee = socket.socketpair()
        super().__init__(("127.0.0.1", 0), _Handler)

    def serve_until(self, stopping: threading.Event) -> None:
        """Accept connections until ``stopping`` is set and :meth:`wake` is called.

        Unlike ``serve_forever`` it does not poll, so ``stop()`` returns at once, not after a poll interval.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wakee, selectors.EVENT_READ)
            while not stopping.is_set():
                ready = selector.select()
                if not stopping.is_set() and any(key.fileobj is self for key, _ in ready):
                    self._accept()

    def _accept(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up before it was accepted
        try:
            self.process_request(request, client_address)
        except Exception:  # no thread could serve it: close it rather than leak the socket
            self.shutdown_request(request)

    def wake(self) -> None:
        """Wake :meth:`serve_until` so it sees that it must stop."""
        with contextlib.suppress(OSError):
            self._waker.send(b"x")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._waker.close()
        self._wakee.close()

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s host-name lookup (a DNS query 127.0.0.1 does not need)."""
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a daemon thread registered before it starts (so stop() sees it)."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="FakeSMNServer-conn",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors: a client hanging up, or stop() cutting a connection, is routine here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self, deadline: float) -> None:
        """Shut down every open connection and join its thread, until ``deadline`` (monotonic)."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # its handler may have closed it meanwhile
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Reads each request on a keep-alive connection and writes the fake's answer."""

    protocol_version = "HTTP/1.1"
    timeout = 60.0  # an idle keep-alive connection does not hold a thread for ever
    server: _Server

    def setup(self) -> None:
        """Turn off Nagle's algorithm: headers and body go out in two writes, and must not wait 40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        """Serve any method the same way; the router answers 404 to what SMN does not offer."""
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a test's output is no place for an access log."""

    def _dispatch(self) -> None:
        request_id = _new_id()
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._write(
                _Refusal(400, _CODE_INVALID, f"Cannot read the body: {exc}").answer(request_id), request_id
            )
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        req = _Request(self.command, self.path, headers, body, request_id, fake._wall_clock())
        answer = fake._handle(req)
        if answer.status is None:
            self.close_connection = True
            return
        self._write(answer, request_id)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= DEFAULT_MAX_BODY_BYTES:
            raise ValueError(f"Content-Length {length} is out of range")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(100).split(b";")[0], 16)
            if size == 0:
                break
            if size + sum(map(len, chunks)) > DEFAULT_MAX_BODY_BYTES:
                raise ValueError("the chunked body is too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(100)
        while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def _write(self, answer: _Answer, request_id: str) -> None:
        self.send_response(answer.status or 500)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("X-Request-Id", request_id)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)
