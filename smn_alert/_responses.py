"""SMN's answers: per-number results, error mapping, Retry-After."""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Optional

from smn_alert import _smn
from smn_alert.errors import SMNAuthError, SMNError, SMNRequestError, SMNServerError, SMNThrottledError

#: Code of the failed result given to a number that SMN's answer did not mention.
MISSING_CODE = "SMN_ALERT.MISSING"
#: Server text quoted in an exception is cut to this many characters.
MAX_EXCERPT = 200
#: Largest answer read, in bytes (after undoing any compression). SMN's biggest answer is to a batch of 1,000
#: numbers: about 80 KB when every number is accepted (an entry is ~80 bytes: number and 32-character
#: message id) and about 135 KB when every one is refused with a long message (both measured on
#: FakeSMNServer, whose entries have SMN's shape). 1 MiB leaves more than 7 times that; anything bigger is a
#: proxy, a captive portal or a broken server, so it is not read further and counts as a malformed answer.
MAX_ANSWER_BYTES = 1 << 20

_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class EndpointResult:
    """What SMN did with one phone number: a ``message_id`` when accepted, else ``code`` and ``message``."""

    endpoint: str
    message_id: Optional[str] = None
    code: Optional[str] = None
    message: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Whether SMN accepted the message for this number."""
        return self.message_id is not None


@dataclass(frozen=True)
class SmsBatchResult:
    """The outcome of :meth:`SMNClient.publish_sms`: one result per distinct number, in the order given."""

    results: tuple[EndpointResult, ...]
    request_ids: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every number was accepted."""
        return all(result.ok for result in self.results)

    @property
    def delivered(self) -> tuple[str, ...]:
        """The numbers SMN accepted the message for."""
        return tuple(result.endpoint for result in self.results if result.ok)

    @property
    def refused(self) -> tuple[EndpointResult, ...]:
        """The results of the numbers that did not get the message."""
        return tuple(result for result in self.results if not result.ok)


@dataclass(frozen=True)
class TopicPublishResult:
    """The outcome of :meth:`SMNClient.publish_to_topic`."""

    message_id: str
    request_id: Optional[str]


def parse_answer(status: int, headers: Mapping[str, str], body: bytes) -> tuple[dict[str, Any], str | None]:
    """Return a 2xx answer's JSON object and its request id (the body's, else ``X-Request-Id``).

    Raises:
        SMNServerError: The body is not a JSON object.
    """
    data = _json_object(body)
    header_id = _header(headers, "X-Request-Id")
    if data is None:
        raise SMNServerError(
            f"malformed answer from SMN: {_excerpt(body)}", status=status, request_id=header_id
        )
    request_id = data.get("request_id")
    return data, request_id if isinstance(request_id, str) and request_id else header_id


def oversized_answer(status: int, headers: Mapping[str, str]) -> SMNServerError:
    """Return the error for an answer over :data:`MAX_ANSWER_BYTES`: malformed (retryable), any status.

    SMN never answers that much, so its status says nothing about SMN either: a 403 portal page must not
    pause paging as a refused signature would.
    """
    return SMNServerError(
        f"malformed answer from SMN: over {MAX_ANSWER_BYTES / (1 << 20):g} MiB, read no further "
        f"(HTTP {status}; a proxy's or captive portal's page?)",
        status=status,
        request_id=_header(headers, "X-Request-Id"),
    )


def decode_body(body: bytes, content_encoding: str | None) -> bytes:
    """Undo a gzip or deflate ``Content-Encoding``, giving at most one byte over :data:`MAX_ANSWER_BYTES`.

    The client asks for an uncompressed answer; this is for a gateway that compresses anyway. The output is
    bounded, so a small compressed bomb cannot grow into gigabytes. Another coding, or a body that does not
    decompress, is returned as is (and then does not parse: a malformed answer).
    """
    coding = (content_encoding or "").strip().lower()
    if coding not in ("gzip", "x-gzip", "deflate"):
        return body
    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):  # a gzip or zlib header, else raw deflate
        try:
            return zlib.decompressobj(wbits).decompress(body, MAX_ANSWER_BYTES + 1)
        except zlib.error:
            continue
    return body


def chunk_results(
    sent: Sequence[str], data: Mapping[str, Any], request_id: str | None
) -> list[EndpointResult]:
    """Match SMN's per-number answer to the numbers sent: one result per number, an ok entry winning.

    A number the answer does not mention gets a failed result with code :data:`MISSING_CODE`.

    Raises:
        SMNServerError: The answer has no ``result`` list.
    """
    entries = data.get("result")
    if not isinstance(entries, list):
        raise SMNServerError("malformed answer from SMN: no result list", status=200, request_id=request_id)
    answered: dict[str, EndpointResult] = {}
    for entry in entries:
        result = _entry_result(entry)
        if result is None:
            continue
        known = answered.get(result.endpoint)
        if known is None or (result.ok and not known.ok):
            answered[result.endpoint] = result
    # SMN may answer "1867669-6912" as "18676696912": match the numbers left over by their bare digits.
    sent_set = set(sent)
    left = ((endpoint, result) for endpoint, result in answered.items() if endpoint not in sent_set)
    loose = {_smn.bare_number(endpoint): result for endpoint, result in left}
    return [_pick(number, answered, loose) for number in sent]


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, now: datetime | None = None
) -> SMNError:
    """Turn a non-2xx answer into the :class:`SMNError` subclass that says what to do about it.

    Args:
        status: HTTP status.
        headers: Response headers (any case); ``X-Request-Id`` and ``Retry-After`` are read.
        body: SMN's ``{code, message}``, the gateway's ``{error_code, error_msg}``, or anything else.
        now: The current time, to turn a ``Retry-After`` date into seconds.
    """
    data = _json_object(body) or {}
    code = _first_str(data, "code", "error_code")
    server_text = _first_str(data, "message", "error_msg")
    request_id = _first_str(data, "request_id") or _header(headers, "X-Request-Id")
    text = _clean(server_text) if server_text else _status_text(status, body)
    retry_after = parse_retry_after(_header(headers, "Retry-After"), now or _utcnow())
    kind = _error_class(status, code)
    return kind(text, status=status, code=code, request_id=request_id, retry_after=retry_after)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Return the seconds a ``Retry-After`` value (seconds or an HTTP date) asks to wait, or ``None``.

    A date in the past gives ``0.0``; an unreadable value gives ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    # Imported here: email.utils costs ~10 ms at start-up, and only a date Retry-After needs it.
    from email.utils import parsedate_to_datetime

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):  # Python 3.9 raises TypeError
        return None
    return max(0.0, (_aware(moment) - _aware(now)).total_seconds())


def _error_class(status: int, code: str | None) -> type[SMNError]:
    """Pick the error class from the status, refined by SMN's or the gateway's code."""
    if status >= 500 or status == 408:  # 408: the server gave up waiting for us; the same request can pass
        return SMNServerError
    if status == 401 or code in _smn.AUTH_CODES:
        return SMNAuthError
    if status == 429 or code in _smn.THROTTLE_CODES:
        return SMNThrottledError
    if status == 403 and code != _smn.INVALID_MESSAGE_CODE:
        return SMNAuthError  # no permission, arrears, suspended: a person must act
    return SMNRequestError


def _pick(
    number: str, answered: Mapping[str, EndpointResult], loose: Mapping[str, EndpointResult]
) -> EndpointResult:
    found = answered.get(number) or loose.get(_smn.bare_number(number))
    if found is None:
        return EndpointResult(number, code=MISSING_CODE, message="SMN's answer did not mention this number")
    return found if found.endpoint == number else replace(found, endpoint=number)


def _entry_result(entry: object) -> EndpointResult | None:
    """Read one ``result`` entry; ``None`` when it names no number."""
    if not isinstance(entry, dict) or not isinstance(entry.get("endpoint"), str):
        return None
    message_id, code, message = (_first_str(entry, key) for key in ("message_id", "code", "message"))
    if message_id is None and code is None and message is None:
        message = "SMN gave neither a message_id nor an error code"
    return EndpointResult(entry["endpoint"], message_id, code, message)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """Return ``body`` parsed as a JSON object, or ``None`` for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _first_str(data: Mapping[str, Any], *keys: str) -> str | None:
    """Return the first of ``keys`` whose value is a non-empty string."""
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _status_text(status: int, body: bytes) -> str:
    """Describe an answer that is not SMN's error JSON: the status and a clean start of the body."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "unknown status"
    excerpt = _excerpt(body)
    return _clean(f"HTTP {status} {phrase}: {excerpt}" if excerpt else f"HTTP {status} {phrase}")


def _excerpt(body: bytes) -> str:
    """Return the readable start of a body (HTML tags, scripts and control characters removed)."""
    text = body[:8192].decode("utf-8", "replace")
    return _clean(_HTML_DROP.sub(" ", text)) or "(empty body)"


def _clean(text: str) -> str:
    """Collapse control characters and whitespace, and cut to :data:`MAX_EXCERPT` characters."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= MAX_EXCERPT else flat[: MAX_EXCERPT - 1] + "…"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
