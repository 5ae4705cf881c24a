"""How one request reaches SMN: signed headers, a session per process, and an answer read against a deadline.

``SMNClient`` says what to send (SmsBatchPublish, topic publish) and what the answer means; this module
carries the bytes. ``requests`` is imported on the first request only, so ``import smn_alert`` stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from smn_alert import _signer
from smn_alert._client_settings import ConnectionSettings
from smn_alert._responses import MAX_ANSWER_BYTES, decode_body, oversized_answer
from smn_alert.errors import SMNConnectionError

if TYPE_CHECKING:
    import requests

#: The content type SMN expects; it is signed, so it is sent exactly like this.
CONTENT_TYPE = "application/json;charset=UTF-8"
# Bytes asked for per read of the answer; each read waits for one recv at most, see _read_body.
_READ_PIECE = 64 * 1024


class Transport:
    """Sends signed POSTs to SMN for one client, one at a time, and reads each whole answer or gives up.

    The ``requests`` session is made on the first request, and made afresh in a forked child so that parent
    and child never share pooled sockets. A session passed in is used and never closed.
    """

    def __init__(
        self, settings: ConnectionSettings, session: requests.Session | None, now: Callable[[], datetime]
    ) -> None:
        self._settings = settings
        self._now = now
        self._session = session
        self._owns_session = False
        self._session_pid = os.getpid()
        self._closed = False

    def close(self) -> None:
        """Close the session this transport made (a session passed in is left open); idempotent.

        In a forked child the parent's session is only dropped, like in :meth:`_get_session`: closing it takes
        urllib3's pool locks, which the parent's worker may have held at the fork, and could hang the child.
        """
        self._closed = True
        if self._owns_session and self._session is not None:
            if os.getpid() == self._session_pid:
                self._session.close()
            self._session = None

    def send(self, url: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
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
        headers["User-Agent"] = f"smn-alert/{version()}"
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


@lru_cache(maxsize=1)
def version() -> str:
    """Return the installed smn-alert version (for ``User-Agent``), read without importing the package."""
    from importlib import metadata  # (only needed for the first request)

    try:
        return metadata.version("smn-alert")
    except metadata.PackageNotFoundError:
        return "0+unknown"
