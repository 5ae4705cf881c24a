"""AK/SK request signing (``SDK-HMAC-SHA256``) as Huawei Cloud's API gateway checks it.

Pure functions: the same inputs always give the same signature, so the client signs with them and
``FakeSMNServer`` verifies with them. The steps follow ``smn-api.md`` section 3.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "ALGORITHM",
    "DATE_FORMAT",
    "authorization_header",
    "canonical_request",
    "parse_authorization",
    "sdk_date",
    "signature",
]

#: The only algorithm the gateway accepts for AK/SK signing.
ALGORITHM = "SDK-HMAC-SHA256"
#: Format of the ``X-Sdk-Date`` header (UTC).
DATE_FORMAT = "%Y%m%dT%H%M%SZ"


def sdk_date(now: datetime | None = None) -> str:
    """Return the ``X-Sdk-Date`` value for ``now`` (default: the current UTC time)."""
    moment = now if now is not None else datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(DATE_FORMAT)


def _canonical_uri(path: str) -> str:
    """Percent-decode, re-encode each segment with ``safe="~"``, and end with ``/`` (signing only)."""
    segments = [quote(unquote(segment), safe="~") for segment in path.split("/")]
    uri = "/".join(segments) or "/"
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(query: str) -> str:
    """Sort the ``key=value`` pairs and encode both sides with ``safe="~"``."""
    pairs = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="~"), quote(unquote(value), safe="~")))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _signed_names(headers: Mapping[str, str], names: Iterable[str] | None) -> list[str]:
    chosen = names if names is not None else headers.keys()
    return sorted({name.lower() for name in chosen})


def canonical_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Iterable[str] | None = None,
) -> tuple[str, str]:
    """Build the canonical request and the ``SignedHeaders`` list.

    Args:
        method: HTTP method, any case.
        url: Full URL or a path with an optional query string.
        headers: The headers to send; every one in ``signed_headers`` must be present.
        body: The exact body bytes sent.
        signed_headers: Header names to sign; default: all of ``headers``.

    Returns:
        ``(canonical_request, signed_headers)``.
    """
    parts = urlsplit(url)
    lowered = {name.lower(): value for name, value in headers.items()}
    names = _signed_names(headers, signed_headers)
    canonical_headers = "".join(f"{name}:{lowered[name].strip()}\n" for name in names)
    signed = ";".join(names)
    lines = [
        method.upper(),
        _canonical_uri(parts.path),
        _canonical_query(parts.query),
        canonical_headers,
        signed,
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines), signed


def signature(
    sk: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Iterable[str] | None = None,
) -> tuple[str, str]:
    """Return ``(hex signature, signed headers)``; ``headers`` must hold ``X-Sdk-Date``."""
    request, signed = canonical_request(method, url, headers, body, signed_headers)
    date = next(value for name, value in headers.items() if name.lower() == "x-sdk-date").strip()
    string_to_sign = "\n".join([ALGORITHM, date, hashlib.sha256(request.encode("utf-8")).hexdigest()])
    digest = hmac.new(sk.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest, signed


def authorization_header(
    ak: str,
    sk: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    signed_headers: Iterable[str] | None = None,
) -> str:
    """Return the ``Authorization`` header value that signs this request with ``ak``/``sk``."""
    digest, signed = signature(sk, method, url, headers, body, signed_headers)
    return f"{ALGORITHM} Access={ak}, SignedHeaders={signed}, Signature={digest}"


def parse_authorization(value: str) -> dict[str, str] | None:
    """Split an ``Authorization`` header into ``Access``, ``SignedHeaders`` and ``Signature``.

    Returns ``None`` when the value is not an ``SDK-HMAC-SHA256`` header.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        return None
    fields: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            fields[key] = val
    if {"Access", "SignedHeaders", "Signature"} - fields.keys():
        return None
    return fields
