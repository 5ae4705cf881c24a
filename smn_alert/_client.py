"""SMNClient: sign and send SmsBatchPublish and topic-publish requests to Huawei Cloud SMN."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from smn_alert import _signer, _smn
from smn_alert._client_settings import (
    DEFAULT_TIMEOUT,
    ENV_AK,
    ENV_ENDPOINT_URL,
    ENV_PROJECT_ID,
    ENV_REGION,
    ENV_SECURITY_TOKEN,
    ENV_SK,
    ConnectionSettings,
    Timeout,
    endpoint_for_region,
)
from smn_alert._responses import (
    MAX_ANSWER_BYTES,
    MISSING_CODE,
    EndpointResult,
    SmsBatchResult,
    TopicPublishResult,
    chunk_results,
    decode_body,
    error_from_response,
    oversized_answer,
    parse_answer,
    parse_retry_after,
)
from smn_alert.errors import SMNConfigError, SMNConnectionError, SMNError, SMNServerError

if TYPE_CHECKING:
    import requests

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_TIMEOUT",
    "ENV_AK",
    "ENV_ENDPOINT_URL",
    "ENV_PROJECT_ID",
    "ENV_REGION",
    "ENV_SECURITY_TOKEN",
    "ENV_SK",
    "MAX_ANSWER_BYTES",
    "MISSING_CODE",
    "EndpointResult",
    "SMNClient",
    "SmsBatchResult",
    "Timeout",
    "TopicPublishResult",
    "endpoint_for_region",
    "error_from_response",
    "parse_retry_after",
]

#: The content type SMN expects; it is signed, so it is sent exactly like this.
CONTENT_TYPE = "application/json;charset=UTF-8"
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")
_TOPIC_FORBIDDEN = "[]【】"
# Bytes asked for per read of the answer; each read waits for one recv at most, see _read_body.
_READ_PIECE = 64 * 1024


class SMNClient:
    """Send SMS through Huawei Cloud SMN, signing each request with AK/SK (or an IAM token).

    Used by one thread at a time. The ``requests`` session is made on the first request, and made
    afresh in a forked child so that parent and child never share pooled sockets.

    Args:
        project_id: SMN project id (``HUAWEICLOUD_SDK_PROJECT_ID``).
        region: Region such as ``cn-north-4`` (``HUAWEICLOUD_SDK_REGION``); gives the endpoint.
        endpoint_url: Base URL overriding ``region`` (``SMN_ALERT_ENDPOINT_URL``), e.g. a FakeSMNServer.
        ak: Access key (``HUAWEICLOUD_SDK_AK``).
        sk: Secret key (``HUAWEICLOUD_SDK_SK``).
        security_token: Token of temporary AK/SK (``HUAWEICLOUD_SDK_SECURITY_TOKEN``).
        auth_token: IAM token sent as ``X-Auth-Token``; used only when no AK/SK is configured.
        timeout: ``(connect, read)`` seconds, or one number ``t`` for ``(t, t)``, as numbers or numeric
            strings (INI and environment configs give strings); default :data:`DEFAULT_TIMEOUT`. Connecting
            may take ``connect`` s, each wait for data ``read`` s, and the whole attempt (connect, send, read
            the whole answer) ``connect + read`` s: an answer that comes slower is abandoned like a timeout.
        verify: TLS verification: a bool, ``"true"``/``"false"``/``"1"``/``"0"``/``"yes"``/``"no"``
            (any case), or the path of an existing CA bundle file or directory.
        session: A ``requests.Session`` to use; the client never closes it.
        environ: Where unset settings are looked up (values are stripped); default ``os.environ``.
        now: Clock giving an aware UTC ``datetime`` for ``X-Sdk-Date``.

    Raises:
        SMNConfigError: A setting is missing or invalid; the message names it, never a secret.
    """

    def __init__(
        self,
        *,
        project_id: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        security_token: str | None = None,
        auth_token: str | None = None,
        timeout: Timeout | str | Sequence[float | str] | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        environ: Mapping[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._settings = ConnectionSettings.resolve(
            project_id=project_id,
            region=region,
            endpoint_url=endpoint_url,
            ak=ak,
            sk=sk,
            security_token=security_token,
            auth_token=auth_token,
            timeout=timeout,
            verify=verify,
            environ=environ,
        )
        self._now = now if now is not None else _utcnow
        self._session = session
        self._owns_session = False
        self._session_pid = os.getpid()
        self._closed = False

    @property
    def endpoint(self) -> str:
        """The base URL requests go to, without a trailing slash."""
        return self._settings.endpoint

    @property
    def project_id(self) -> str:
        """The project id in the request paths."""
        return self._settings.project_id

    def __repr__(self) -> str:
        settings = self._settings
        auth = f"ak={settings.ak[:4] + '***'!r}" if settings.ak is not None else "auth='token'"
        return f"SMNClient(endpoint={settings.endpoint!r}, project_id={settings.project_id!r}, {auth})"

    def __enter__(self) -> SMNClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prepare(self) -> None:
        """Import the HTTP stack now, so that the first page needs no import.

        Importing ``requests`` takes logging's module lock (urllib3 sets up its loggers), and
        ``dictConfig`` holds that lock while it closes old handlers: a first page importing it then
        would wait out the whole shutdown timeout. ``SMNHandler`` calls this when it is built.
        """
        import requests  # noqa: F401  (the import is the point)

        _version()

    def close(self) -> None:
        """Close the session this client made (a session passed in is left open); idempotent.

        In a forked child the parent's session is only dropped, like in :meth:`_get_session`: closing it takes
        urllib3's pool locks, which the parent's worker may have held at the fork, and could hang the child.
        """
        self._closed = True
        if self._owns_session and self._session is not None:
            if os.getpid() == self._session_pid:
                self._session.close()
            self._session = None

    def publish_sms(
        self,
        endpoints: Iterable[str],
        message: str,
        *,
        sign_id: str | None = None,
        message_include_sign_flag: bool | str | None = None,
        extend_code: str | None = None,
        extend_src_id: str | None = None,
    ) -> SmsBatchResult:
        """Send ``message`` to ``endpoints`` with SmsBatchPublish, at most 1000 numbers per request.

        Numbers are de-duplicated by exact string. When a request after the first fails, its numbers
        are reported as failed with that error's code and message, so numbers already paged are never
        paged again by a retry of the whole call.

        Args:
            endpoints: Phone numbers.
            message: At most 490 characters; with the flag, it starts with the signature in 【】.
            sign_id: Id of an approved signature; SMN puts it in front of the message.
            message_include_sign_flag: ``True``/``"true"``: the message carries its signature.
            extend_code: Up to 32 bytes echoed in delivery reports.
            extend_src_id: Sender extension, 1 to 8 digits.

        Returns:
            One :class:`EndpointResult` per distinct number, in the order given.

        Raises:
            SMNConfigError: A field is invalid (nothing was sent).
            SMNError: The first request failed.
        """
        numbers = _smn.check_endpoints(endpoints)
        extra = _sms_fields(message, sign_id, message_include_sign_flag, extend_code, extend_src_id)
        path = f"/v2/{self._settings.project_id}/notifications/sms"
        results: list[EndpointResult] = []
        request_ids: list[str] = []
        size = _smn.MAX_ENDPOINTS_PER_REQUEST
        for start in range(0, len(numbers), size):
            chunk = numbers[start : start + size]
            try:
                data, request_id = self._post(path, {"endpoints": chunk, **extra})
                results.extend(chunk_results(chunk, data, request_id))
            except SMNError as exc:
                if start == 0:
                    raise
                results.extend(EndpointResult(number, code=exc.code, message=exc.message) for number in chunk)
                request_id = exc.request_id
            if request_id:
                request_ids.append(request_id)
        return SmsBatchResult(tuple(results), tuple(request_ids))

    def publish_to_topic(
        self, topic_urn: str, message: str, *, subject: str | None = None
    ) -> TopicPublishResult:
        """Publish ``message`` to a topic (its SMS subscribers get it as text).

        Raises:
            SMNConfigError: A field is invalid, or the message holds ``[]``/``【】`` (SMN refuses them).
            SMNError: SMN refused the request or could not be reached.
        """
        urn = _smn.check_topic_urn(topic_urn)
        text = _smn.check_message(message)
        if any(char in text for char in _TOPIC_FORBIDDEN):
            raise SMNConfigError(
                "message must not contain [ ] 【 】 when published to a topic (SMN refuses it)"
            )
        payload = {"message": text}
        checked_subject = _smn.check_subject(subject)
        if checked_subject is not None:
            payload["subject"] = checked_subject
        path = f"/v2/{self._settings.project_id}/notifications/topics/{quote(urn, safe='')}/publish"
        data, request_id = self._post(path, payload)
        message_id = data.get("message_id")
        if not isinstance(message_id, str):
            raise SMNServerError(
                "malformed answer from SMN: no message_id", status=200, request_id=request_id
            )
        return TopicPublishResult(message_id, request_id)

    def _post(self, path: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """POST ``payload`` as compact UTF-8 JSON; return the answer's JSON object and request id."""
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            raise SMNConfigError("request fields hold text that is not valid Unicode") from None
        status, headers, content = self._send(self._settings.endpoint + path, body)
        if not 200 <= status < 300:
            raise error_from_response(status, headers, content, now=self._now())
        return parse_answer(status, headers, content)

    def _send(self, url: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """Send one signed request; return the answer's status, headers and body, read within the deadline.

        Every failure to get a whole answer is a :class:`SMNConnectionError`: network errors, TLS, a malformed
        proxy setting (``InvalidURL``), a missing CA bundle (``OSError``), and an answer still incomplete
        ``connect + read`` seconds after the attempt began (see :attr:`ConnectionSettings.deadline`). The
        message names the exception type only: its text can hold a proxy URL's password. An answer over
        :data:`MAX_ANSWER_BYTES` is a malformed answer (:class:`SMNServerError`), read no further.
        """
        import requests  # (`import smn_alert` must stay free of requests)

        settings = self._settings
        deadline = time.monotonic() + settings.deadline
        session = self._get_session()
        # None removes a header the session has: a session-wide Authorization must not ride along a token.
        headers: dict[str, str | None] = {"Authorization": None, **self._headers(url, body)}
        try:
            response = session.post(
                url,
                data=body,
                headers=headers,
                timeout=settings.timeout,
                verify=settings.verify,
                allow_redirects=False,
                stream=True,  # the body is read by _read_body, against the deadline and the size cap
                auth=_no_other_auth,
            )
        except (requests.RequestException, OSError) as exc:
            error = self._unreachable(f"{_why_unreachable(exc)} ({type(exc).__name__})")
            # A traceback prints the cause's text too: for proxy errors that may be user:password@proxy.
            proxy_trouble = (requests.exceptions.ProxyError, requests.exceptions.InvalidURL)
            raise error from (None if isinstance(exc, proxy_trouble) else exc)
        with response:  # closing an answer not read to its end closes its connection
            content = self._read(response, deadline)
        return response.status_code, response.headers, content

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """Read the body of ``response`` (see :func:`_read_body`), decompressed; map failures to SMNError."""
        import http.client

        import urllib3  # (requests' own dependency)

        status, headers = response.status_code, response.headers
        try:
            content = _read_body(response, deadline, self._settings.read_timeout)
        except _TooLarge:
            raise oversized_answer(status, headers) from None
        except _TooSlow:
            raise self._unreachable(self._too_slow()) from None
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, socket.timeout))
            if timed_out and time.monotonic() >= deadline:
                raise self._unreachable(self._too_slow()) from None
            why = "no answer in time" if timed_out else "connection broke while reading the answer"
            raise self._unreachable(f"{why} ({type(exc).__name__})") from exc
        decoded = decode_body(content, headers.get("Content-Encoding"))
        if len(decoded) > MAX_ANSWER_BYTES:
            raise oversized_answer(status, headers)
        return decoded

    def _unreachable(self, why: str) -> SMNConnectionError:
        return SMNConnectionError(f"cannot reach SMN at {self._settings.host}: {why}")

    def _too_slow(self) -> str:
        return f"no answer in time (the whole answer took over {self._settings.deadline:g} s)"

    def _headers(self, url: str, body: bytes) -> dict[str, str]:
        """Return the request headers, signed with AK/SK or carrying the IAM token."""
        settings = self._settings
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": settings.host,
            "X-Project-Id": settings.project_id,
            "X-Sdk-Date": _signer.sdk_date(self._now()),
        }
        if settings.security_token is not None:
            headers["X-Security-Token"] = settings.security_token
        if settings.ak is not None and settings.sk is not None:
            headers["Authorization"] = _signer.authorization_header(
                settings.ak, settings.sk, "POST", url, headers, body, signed_headers=list(headers)
            )
        elif settings.auth_token is not None:
            headers["X-Auth-Token"] = settings.auth_token
        headers["User-Agent"] = f"smn-alert/{_version()}"
        # SMN's answers are small; uncompressed, the size cap holds for what is kept in memory.
        headers["Accept-Encoding"] = "identity"
        return headers

    def _get_session(self) -> requests.Session:
        """Return the session, making one on first use and again in a forked child."""
        pid = os.getpid()
        if self._session is not None and self._session_pid == pid:
            return self._session
        if self._closed and self._session_pid == pid:  # a forked child's copy may still be used
            raise SMNConnectionError(f"the client for {self._settings.host} is closed")
        import requests  # (`import smn_alert` must stay free of requests)

        # In a forked child, abandon the parent's session without closing it: closing takes urllib3's pool
        # locks, which the parent's worker may have held at the fork, and would deadlock the child.
        self._session, self._owns_session, self._session_pid = requests.Session(), True, pid
        return self._session


def _sms_fields(
    message: object, sign_id: object, flag: object, extend_code: object, extend_src_id: object
) -> dict[str, str]:
    """Validate the SmsBatchPublish fields other than ``endpoints``; keep only those that are set."""
    text = _smn.check_message(message)
    checked_sign, checked_flag = _smn.check_sign(sign_id, flag)
    candidates = {
        "message": text,
        "sign_id": checked_sign,
        "message_include_sign_flag": checked_flag,
        "extend_code": _smn.check_extend_code(extend_code),
        "extend_src_id": _smn.check_extend_src_id(extend_src_id),
    }
    if checked_flag == "true" and not _SIGNATURE_HEAD.match(text):
        raise SMNConfigError(
            "message must start with its signature in 【】 when message_include_sign_flag is true"
        )
    return {name: value for name, value in candidates.items() if value is not None}


class _TooLarge(Exception):
    """The answer is larger than :data:`MAX_ANSWER_BYTES`."""


class _TooSlow(Exception):
    """The answer was still incomplete at the attempt's deadline."""


def _no_other_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Return ``request`` unchanged: the ``auth`` given on every request, so that nothing replaces ours.

    Without an ``auth``, requests puts a ``~/.netrc`` login (``NETRC``, a ``default`` entry matches every
    host) or a session's ``auth`` in the ``Authorization`` header, over the signature: SMN answers 401 and
    paging pauses. Any ``auth`` stops that; proxies and CA bundles from the environment still apply.
    """
    return request


def _read_body(response: requests.Response, deadline: float, read_timeout: float) -> bytes:
    """Read the raw body of a streamed ``response``, giving up at ``deadline`` or past the size cap.

    Raises :class:`_TooLarge` for a ``Content-Length`` over :data:`MAX_ANSWER_BYTES` (nothing is read) or
    once more than that has come, and :class:`_TooSlow` when ``deadline`` (``time.monotonic()``) passes.

    The bound on time: each read makes at most one ``recv`` (``read1``), and before each the socket's timeout
    is set to what is left of the deadline, so reading ends by the deadline. Where the socket cannot be
    reached, each ``recv`` still waits at most ``read_timeout``: the bound is then deadline + read timeout.
    (A chunked answer's size lines, a few bytes each, are read whole.)
    """
    if _declared_length(response.headers.get("Content-Length")) > MAX_ANSWER_BYTES:
        raise _TooLarge
    raw = response.raw
    read = _one_recv_reader(raw)
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    restore = sock.gettimeout() if sock is not None else None
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _TooSlow
            if sock is not None:
                sock.settimeout(min(read_timeout, left))
            piece = read(_READ_PIECE)
            if not piece:
                return b"".join(parts)
            size += len(piece)
            if size > MAX_ANSWER_BYTES:
                raise _TooLarge
            parts.append(piece)
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):  # closed by now: nothing to restore
                sock.settimeout(restore)


def _one_recv_reader(raw: Any) -> Callable[[int], bytes]:
    """Return ``read(n)`` making at most one ``recv``: urllib3's ``read1`` (2.2+), else http.client's.

    ``read(n)`` would wait for all ``n`` bytes, one ``recv`` after another, past any deadline.
    """
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return lambda n: read1(n, decode_content=False) or b""
    wrapped = getattr(raw, "_fp", None)  # urllib3 < 2.2: the http.client response under it
    plain_read1 = getattr(wrapped, "read1", None)
    if plain_read1 is not None:
        return lambda n: plain_read1(n) or b""
    return lambda n: raw.read(n, decode_content=False) or b""


def _declared_length(value: str | None) -> int:
    """Return a ``Content-Length`` header's value, or -1 when there is none or it is not a number."""
    text = (value or "").strip()
    return int(text) if text.isdigit() else -1


def _why_unreachable(exc: Exception) -> str:
    """Say why no answer came, without the exception text (it can hold proxy URLs with passwords)."""
    import requests  # (`import smn_alert` must stay free of requests)

    reasons: tuple[tuple[type[BaseException], str], ...] = (
        (requests.exceptions.SSLError, "TLS handshake or certificate check failed"),
        (requests.ConnectTimeout, "connection timed out"),
        (requests.Timeout, "no answer in time"),
        (requests.exceptions.ChunkedEncodingError, "connection broke while reading the answer"),
        (requests.ConnectionError, "connection failed (refused, reset or DNS)"),
        (requests.exceptions.InvalidURL, "invalid URL or proxy setting (check *_PROXY)"),
        (requests.RequestException, "request failed"),
    )
    fallback = "local error (a CA bundle or certificate file?)"
    return next((why for kind, why in reasons if isinstance(exc, kind)), fallback)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@lru_cache(maxsize=1)
def _version() -> str:
    """Return the installed smn-alert version, read without importing the package."""
    from importlib import metadata  # (only needed for the first request)

    try:
        return metadata.version("smn-alert")
    except metadata.PackageNotFoundError:
        return "0+unknown"
