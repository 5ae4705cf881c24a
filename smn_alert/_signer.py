"""AK/SK request signing (``SDK-HMAC-SHA256``) as Huawei Cloud's API gateway checks it.

Pure functions: the same inputs always give the same signature. The rules are those of Huawei's official
Python signer (``huaweicloudsdkcore``), pinned by requests it signed (``tests/data/signer-official.json``):

- the path is percent-decoded as a whole, then split on ``/`` and each segment encoded with only ``~`` safe
  (so ``a%2Fb`` is signed as two segments ``a/b``), and a ``/`` is appended;
- the query pairs are decoded, sorted by their decoded ``(key, value)``, then encoded (so ``a~`` sorts
  before ``a%C3%A9``, as ``~`` sorts before ``é``);
- a body whose ``Content-Type`` is not JSON is sent with ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD``, and a
  signed ``X-Sdk-Content-Sha256`` stands in for the body's hash (an empty body always hashes as empty).

``FakeSMNServer`` checks signatures with its own code (``smn_alert.testing._canonical``), not this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from urllib.parse import quote, unquote, urlsplit

#: The only algorithm the gateway accepts for AK/SK signing.
ALGORITHM = "SDK-HMAC-SHA256"
#: Format of the ``X-Sdk-Date`` header (UTC).
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
#: Header that, when signed, stands in for the body's hash in the canonical request.
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
#: Its value for a body that is not signed (what the official signer sends for a non-JSON body).
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def sdk_date(now: datetime | None = None) -> str:
    """Return the ``X-Sdk-Date`` value for ``now`` (default: the current UTC time)."""
    moment = now if now is not None else datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).strftime(DATE_FORMAT)


def _encode(text: str) -> str:
    """Percent-encode ``text`` as UTF-8, leaving only letters, digits and ``-_.~`` as they are."""
    return quote(text, safe="~")


def _canonical_uri(path: str) -> str:
    """Decode the whole path, encode each ``/``-separated segment, and end with ``/`` (signing only)."""
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/")) or "/"
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(query: str) -> str:
    """Decode the ``key=value`` pairs, sort them as decoded text, then encode both sides."""
    pairs = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs))


def _payload_hash(signed: Mapping[str, str], body: bytes) -> str:
    """Return the body's hex SHA-256, or a signed ``X-Sdk-Content-Sha256`` in its place (not for no body)."""
    if not body:
        return _EMPTY_SHA256
    declared = signed.get(CONTENT_SHA256_HEADER.lower(), "").strip()
    return declared or hashlib.sha256(body).hexdigest()


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

    Raises:
        KeyError: A name in ``signed_headers`` is not in ``headers``.
    """
    parts = urlsplit(url)
    lowered = {name.lower(): value for name, value in headers.items()}
    names = _signed_names(headers, signed_headers)
    chosen = {name: lowered[name] for name in names}
    canonical_headers = "".join(f"{name}:{value.strip()}\n" for name, value in chosen.items())
    signed = ";".join(names)
    lines = [
        method.upper(),
        _canonical_uri(parts.path),
        _canonical_query(parts.query),
        canonical_headers,
        signed,
        _payload_hash(chosen, body),
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


def content_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the ``X-Sdk-Content-Sha256`` header the official signer adds for these headers, if any.

    A request whose ``Content-Type`` is given and is not ``application/json...`` (a form, a file) is signed
    with ``UNSIGNED-PAYLOAD`` in place of its body's hash; the header must then be sent and signed too.
    """
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    if not content_type or content_type.startswith("application/json"):
        return {}
    return {CONTENT_SHA256_HEADER: UNSIGNED_PAYLOAD}


def sign(ak: str, sk: str, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """Return ``headers`` plus what the official signer adds, all of them signed, as a request should go.

    Added: ``Host`` from ``url`` when missing, ``X-Sdk-Content-Sha256`` for a non-JSON body (see
    :func:`content_headers`) and ``Authorization``. ``headers`` must hold ``X-Sdk-Date``.

    Raises:
        ValueError: ``headers`` has no ``X-Sdk-Date``, or no ``Host`` and ``url`` names no host.
    """
    names = {name.lower() for name in headers}
    if "x-sdk-date" not in names:
        raise ValueError("X-Sdk-Date header is required to sign a request")
    out = dict(headers)
    if "host" not in names:
        host = urlsplit(url).netloc
        if not host:
            raise ValueError("a Host header, or a URL with a host, is required to sign a request")
        out["Host"] = host
    out.update(content_headers(headers))
    out["Authorization"] = authorization_header(ak, sk, method, url, out, body)
    return out


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
