"""The exceptions smn_alert raises, sorted by what a caller should do about them.

Every SMN failure is an :class:`SMNError` that says whether a retry can help (``retryable``), how long to wait
when the server said so (``retry_after``), and carries what support needs (HTTP status, SMN or gateway code,
request id). Messages never contain credentials: build them from codes and server text, never from headers.
"""

from __future__ import annotations

__all__ = [
    "SMNAuthError",
    "SMNConfigError",
    "SMNConnectionError",
    "SMNError",
    "SMNRequestError",
    "SMNServerError",
    "SMNThrottledError",
]


class SMNError(Exception):
    """A request to SMN failed, or could not be made.

    Attributes:
        status: The HTTP status, or ``None`` when no answer came.
        code: SMN's ``code`` (``SMN.0057``) or the gateway's ``error_code`` (``APIG.0301``).
        request_id: The request id from the body or the ``X-Request-Id`` header.
        retry_after: Seconds the server asked us to wait, when it said.
        retryable: Whether sending the same request again later can succeed.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        details = [
            f"{name}={value}"
            for name, value in (("status", self.status), ("code", self.code), ("request_id", self.request_id))
            if value is not None
        ]
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"


class SMNConfigError(SMNError, ValueError):
    """A setting or request field is invalid; raised before anything is sent.

    It is also a ``ValueError``, so ``logging.config.dictConfig`` reports it at start-up.
    """


class SMNAuthError(SMNError):
    """Credentials, signature or permission were refused (401, 403 SMN.0001/.0070/...).

    Never retried in a loop: the gateway locks an AK/SK pair after five bad signatures.
    """


class SMNThrottledError(SMNError):
    """SMN or its gateway throttled us (429, or SMN.0057 per-number limit); retry after ``retry_after``."""

    retryable = True


class SMNServerError(SMNError):
    """SMN failed on its side (5xx) or answered something that is not SMN's JSON; retry with backoff."""

    retryable = True


class SMNRequestError(SMNError):
    """SMN refused the request's content (bad sign, sensitive words, invalid message); do not resend it."""


class SMNConnectionError(SMNError):
    """No answer: connection refused or reset, DNS failure, TLS failure, timeout; retry with backoff."""

    retryable = True
