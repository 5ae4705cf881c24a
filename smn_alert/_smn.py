"""Validation of SMN request fields by the rules of the SmsBatchPublish page (the seed).

Shared by the client (before anything is sent) and the handler's configuration (at construction).
``FakeSMNServer`` judges requests by its own table (``_fake_table``), so a wrong rule here cannot hide in
both. Each check raises :class:`SMNConfigError`, a ``ValueError``
whose message names the field and the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from smn_alert.errors import SMNConfigError

__all__ = [
    "MAX_ENDPOINTS_PER_REQUEST",
    "MAX_EXTEND_CODE_BYTES",
    "MAX_MESSAGE_LENGTH",
    "MAX_SUBJECT_BYTES",
    "check_endpoint",
    "check_endpoints",
    "check_extend_code",
    "check_extend_src_id",
    "check_message",
    "check_sign",
    "check_subject",
    "check_topic_urn",
    "is_mainland_china",
    "mask_number",
    "normalize_flag",
]

#: SmsBatchPublish takes at most this many numbers in one request.
MAX_ENDPOINTS_PER_REQUEST = 1000
#: An SMS message is at most this many characters.
MAX_MESSAGE_LENGTH = 490
#: ``extend_code`` is at most this many bytes (UTF-8).
MAX_EXTEND_CODE_BYTES = 32
#: A topic message's ``subject`` is at most this many bytes (UTF-8).
MAX_SUBJECT_BYTES = 512

# Digits with an optional leading "+", and the separators SMN accepts (its own example has "1867669-6912").
_PHONE = re.compile(r"\+?[0-9][0-9 /\-]{1,31}")
_EXTEND_SRC_ID = re.compile(r"[0-9]{1,8}")
_SIGN_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TOPIC_URN = re.compile(r"urn:smn:[A-Za-z0-9\-]+:[A-Za-z0-9]+:[A-Za-z0-9][A-Za-z0-9_\-]{0,254}")


def _shown(value: object, limit: int = 40) -> str:
    """Repr of a bad value for an error message, shortened so a huge value cannot flood a log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(field: str, value: object, why: str) -> SMNConfigError:
    return SMNConfigError(f"{field}={_shown(value)}: {why}")


def check_endpoint(value: object, field: str = "endpoint") -> str:
    """Return ``value`` if it is a phone number SMN accepts, else raise naming ``field``."""
    if not isinstance(value, str):
        raise _fail(field, value, "a phone number must be a string")
    if not _PHONE.fullmatch(value):
        raise _fail(field, value, "not a phone number (digits, optional leading '+', '-', '/' or spaces)")
    return value


def check_endpoints(values: Iterable[object], field: str = "endpoints") -> list[str]:
    """Validate phone numbers and de-duplicate them by exact string, keeping their order."""
    if isinstance(values, (str, bytes)):
        raise _fail(field, values, "must be a list of phone numbers, not one string")
    seen: dict[str, None] = {}
    for index, value in enumerate(values):
        seen.setdefault(check_endpoint(value, f"{field}[{index}]"), None)
    if not seen:
        raise _fail(field, [], "at least one phone number is needed")
    return list(seen)


def check_message(value: object, field: str = "message", limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Return ``value`` if it is a non-empty string of at most ``limit`` characters, valid as UTF-8."""
    if not isinstance(value, str):
        raise _fail(field, value, "must be a string")
    if not value.strip():
        raise _fail(field, value, "must not be empty")
    if len(value) > limit:
        raise SMNConfigError(f"{field} is {len(value)} characters; SMN takes at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(field, value, f"is not valid Unicode text ({exc.reason})") from None
    return value


def normalize_flag(value: object, field: str = "message_include_sign_flag") -> str | None:
    """Turn ``True``/``False``/``"true"``/``"false"`` (any case) into SMN's string form; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    raise _fail(field, value, "must be true or false")


def check_sign(sign_id: object, flag: object) -> tuple[str | None, str | None]:
    """Check that exactly one of ``sign_id`` and ``message_include_sign_flag="true"`` is given.

    Returns:
        ``(sign_id, flag)`` with the flag in SMN's string form.
    """
    normalized = normalize_flag(flag)
    if sign_id is not None and normalized is not None:
        raise SMNConfigError(
            f"sign_id={_shown(sign_id)} and message_include_sign_flag={normalized!r}: give only one "
            "(sign_id lets SMN add the signature; the flag says the message carries it in 【】)"
        )
    if sign_id is None and normalized is None:
        raise SMNConfigError("sign_id or message_include_sign_flag='true' is required by SmsBatchPublish")
    if normalized == "false":
        raise _fail("message_include_sign_flag", flag, "'false' needs sign_id; give sign_id instead")
    if sign_id is not None and not (isinstance(sign_id, str) and _SIGN_ID.fullmatch(sign_id)):
        raise _fail("sign_id", sign_id, "must be the signature id from the SMN console (letters, digits)")
    return (sign_id if isinstance(sign_id, str) else None), normalized


def _check_utf8_size(value: object, field: str, limit: int) -> str | None:
    """Return ``value`` if it is ``None`` or a string of at most ``limit`` bytes in UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(field, value, "must be a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _fail(field, value, f"is {size} bytes; at most {limit}")
    return value


def check_extend_code(value: object, field: str = "extend_code") -> str | None:
    """Return ``value`` if it is ``None`` or a string of at most 32 bytes in UTF-8."""
    return _check_utf8_size(value, field, MAX_EXTEND_CODE_BYTES)


def check_extend_src_id(value: object, field: str = "extend_src_id") -> str | None:
    """Return ``value`` if it is ``None`` or 1 to 8 digits (an int is accepted and turned into digits)."""
    if value is None:
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not (isinstance(text, str) and _EXTEND_SRC_ID.fullmatch(text)):
        raise _fail(field, value, "must be 1 to 8 digits")
    return text


def check_topic_urn(value: object, field: str = "topic_urn") -> str:
    """Return ``value`` if it looks like ``urn:smn:{region}:{project_id}:{topic_name}``."""
    if not (isinstance(value, str) and _TOPIC_URN.fullmatch(value)):
        raise _fail(field, value, "must look like urn:smn:{region}:{project_id}:{topic_name}")
    return value


def check_subject(value: object, field: str = "subject") -> str | None:
    """Return ``value`` if it is ``None`` or a string of at most 512 bytes in UTF-8."""
    return _check_utf8_size(value, field, MAX_SUBJECT_BYTES)


def is_mainland_china(number: str) -> bool:
    """Tell whether ``number`` is a mainland China mobile number (``+86``/``0086``, or 11 digits from 1).

    SMN bills those as UCS-2 whatever the text, so segment counts must know.
    """
    digits = "".join(char for char in number if char.isdigit() or char == "+")
    if digits.startswith(("+86", "0086")):
        return True
    return not digits.startswith(("+", "00")) and len(digits) == 11 and digits.startswith("1")


def mask_number(number: str) -> str:
    """Mask a phone number for diagnostics: keep at most the first 6 and last 4 characters.

    At least four characters are always hidden, so ``+8613800000000`` becomes ``+86138****0000`` and
    ``13800000000`` becomes ``138****0000``.
    """
    head = min(6, max(len(number) - 8, 0))
    tail = min(4, max(len(number) - head - 4, 0))
    return number[:head] + "****" + (number[-tail:] if tail else "")
