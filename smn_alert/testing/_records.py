"""What ``FakeSMNServer`` records: the messages it accepted and every request it read (credentials hidden)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from smn_alert.testing._wire import Request

_REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset({"authorization", "x-auth-token", "x-security-token"})


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
        answered_bytes: Bytes of the answer's body written once the answer ended: all of it, or for a huge
            or dripped answer the client hung up on, what went out before (counting what the operating
            system buffered for the client); ``None`` until then, and when closed unanswered.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    status: int | None
    received_at: float
    request_id: str
    answered_bytes: int | None = None

    @classmethod
    def of(cls, req: Request) -> ReceivedRequest:
        """Record ``req`` as read, not yet answered, its credential headers redacted."""
        headers = {
            name: _REDACTED if name in _SECRET_HEADERS else value for name, value in req.headers.items()
        }
        return cls(req.method, req.target, headers, req.body, None, req.received_at, req.request_id)


class Slot:
    """Holds a request record that is replaced once the answer is known."""

    def __init__(self, record: ReceivedRequest) -> None:
        self.record = record
        self.code: str | None = None

    def describe(self) -> str:
        """``POST /v2/.../sms -> 401 APIG.0301``, for a failing test's message."""
        answered = "no answer" if self.record.status is None else str(self.record.status)
        code = f" {self.code}" if self.code else ""
        return f"{self.record.method} {urlsplit(self.record.path).path} -> {answered}{code}"
