"""``FakeSMNServer``'s own ``SDK-HMAC-SHA256`` check: the canonical request rebuilt from the request received.

It is written apart from ``smn_alert._signer`` (the client's side) and imports nothing of it, so a mistake
in the client's signing is refused here instead of being repeated. Both sides are pinned to Huawei's official
signer by the requests it signed (``tests/data/signer-official.json``).
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_CONTENT_SHA256 = "x-sdk-content-sha256"
_UNRESERVED = frozenset((string.ascii_letters + string.digits + "-_.~").encode("ascii"))


@dataclass(frozen=True)
class Credentials:
    """The parts of an ``Authorization: SDK-HMAC-SHA256 ...`` header."""

    access: str
    signed_headers: tuple[str, ...]  # lower case, as listed
    signature: str


def parse(value: str) -> Credentials | None:
    """Read an ``Authorization`` header; ``None`` when it is not a complete ``SDK-HMAC-SHA256`` one."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        return None
    parts = dict(item.strip().partition("=")[::2] for item in rest.split(",") if "=" in item)
    if not {"Access", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    names = tuple(name for name in parts["SignedHeaders"].lower().split(";") if name)
    return Credentials(parts["Access"], names, parts["Signature"])


def _wire_text(text: str) -> str:
    """Undo ``http.server``'s ISO-8859-1 reading of raw UTF-8 bytes (in a target or a header value)."""
    try:
        return text.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _escape(text: str) -> str:
    """Percent-encode the UTF-8 bytes of ``text``, all but letters, digits and ``-_.~``."""
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8"))


def _uri(path: str) -> str:
    segments = unquote(path).split("/")
    joined = "/".join(map(_escape, segments))
    return joined if joined.endswith("/") else joined + "/"


def _query(query: str) -> str:
    decoded = sorted(tuple(unquote(side) for side in item.partition("=")[::2]) for item in query.split("&"))
    return "&".join(f"{_escape(key)}={_escape(value)}" for key, value in decoded) if query else ""


def _body_hash(headers: Mapping[str, str], signed: Sequence[str], body: bytes) -> str:
    """Return the hash line: the body's SHA-256, or a signed ``X-Sdk-Content-Sha256`` (not for no body)."""
    declared = headers.get(_CONTENT_SHA256, "").strip() if _CONTENT_SHA256 in signed else ""
    return declared if body and declared else hashlib.sha256(body).hexdigest()


def canonical_request(
    method: str, target: str, headers: Mapping[str, str], signed: Sequence[str], body: bytes
) -> str:
    """Rebuild the canonical request of a request as received (``headers``: lower-case names, all sent)."""
    where = urlsplit(_wire_text(target))  # an absolute-form target (via a proxy) has a scheme and host
    names = sorted(set(signed))
    lines = "".join(f"{name}:{_wire_text(headers[name]).strip()}\n" for name in names)
    parts = [method.upper(), _uri(where.path), _query(where.query), lines, ";".join(names)]
    return "\n".join([*parts, _body_hash(headers, names, body)])


def expected_signature(
    sk: str, method: str, target: str, headers: Mapping[str, str], signed: Sequence[str], body: bytes
) -> str:
    """Return the signature that the request as received must carry to be accepted."""
    request = canonical_request(method, target, headers, signed, body)
    date = headers["x-sdk-date"].strip()
    to_sign = f"{ALGORITHM}\n{date}\n{hashlib.sha256(request.encode('utf-8')).hexdigest()}"
    return hmac.new(sk.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
