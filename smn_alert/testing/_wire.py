"""The values ``FakeSMNServer``'s parts pass around: a request read, an answer to write, an error answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace

# The fake's own choice for "a field or the body is ill-formed"; real SMN has a code per field.
CODE_INVALID = "SMN.0004"
_JSON = "application/json;charset=UTF-8"


@dataclass(frozen=True)
class Request:
    """One HTTP request as read off the connection."""

    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_id: str
    received_at: float


@dataclass(frozen=True)
class Answer:
    """What to write back; ``status`` ``None`` closes the connection without answering."""

    status: int | None
    body: bytes = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    code: str | None = None  # the error code answered, for diagnostics


class Rejection(Exception):
    """An error answer: SMN's body shape, or the gateway's when ``gateway`` is true."""

    def __init__(self, status: int, code: str, message: str, gateway: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.gateway = status, code, message, gateway

    def answer(self, request_id: str) -> Answer:
        """Build the JSON error answer for the request ``request_id``."""
        if self.gateway:
            payload = {"error_code": self.code, "error_msg": self.message, "request_id": request_id}
        else:
            payload = {"request_id": request_id, "code": self.code, "message": self.message}
        return replace(json_answer(self.status, payload), code=self.code)


def json_answer(status: int, payload: object) -> Answer:
    """Answer ``status`` with ``payload`` as UTF-8 JSON (non-ASCII kept as is, like SMN)."""
    return Answer(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))


def new_id() -> str:
    """Return a fresh request or message id: 32 hex characters."""
    return uuid.uuid4().hex
