"""SMN's facts in one place: its limits, its error codes, its signature rules, and request field checks.

Everything smn_alert knows about what SMN accepts and answers is stated here once: the client checks requests
by it, the answer parsing and the retry policy read its codes, the settings and the senders check their
fields by it. ``FakeSMNServer`` judges requests by its own table (``smn_alert.testing._table``) and imports
nothing of this module, so a wrong rule here cannot hide in both. Each check raises
:class:`SMNConfigError`, a ``ValueError`` whose message names the field and the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from smn_alert._values import invalid, shown, to_bool
from smn_alert.errors import SMNConfigError

# --- limits --------------------------------------------------------------------------------------------
#: SmsBatchPublish takes at most this many numbers in one request.
MAX_ENDPOINTS_PER_REQUEST = 1000
#: An SMS message is at most this many characters.
MAX_MESSAGE_LENGTH = 490
#: ``extend_code`` is at most this many bytes (UTF-8).
MAX_EXTEND_CODE_BYTES = 32
#: A topic message's ``subject`` is at most this many bytes (UTF-8).
MAX_SUBJECT_BYTES = 512
#: SMS one number may get in an hour; SMN refuses more with :data:`PER_NUMBER_LIMIT_CODE`.
PER_NUMBER_HOURLY_LIMIT = 60
#: SMS one number may get in :data:`LONG_WINDOW`; SMN refuses more with :data:`PER_NUMBER_LIMIT_CODE`.
PER_NUMBER_LONG_LIMIT = 200
#: SMN's second per-number window, in seconds (200 SMS per number in 12 hours).
LONG_WINDOW = 12 * 3600.0

# --- error codes ---------------------------------------------------------------------------------------
#: SMN's code for "this number has had too many SMS this hour / these 12 hours".
PER_NUMBER_LIMIT_CODE = "SMN.0057"
#: Codes of SMN and its API gateway that mean "too many requests" (HTTP 429).
TOO_MANY_REQUESTS_CODES = frozenset({"APIG.0308", "APIGW.0308", "SMN.00362"})
#: Every code that means "throttled, retry later": too many requests, or one number's limit.
THROTTLE_CODES = TOO_MANY_REQUESTS_CODES | {PER_NUMBER_LIMIT_CODE}
#: The gateway's codes for a refused signature or token (whatever the HTTP status).
AUTH_CODES = frozenset({"APIG.0301", "APIGW.0301"})
#: SMN's code for an invalid message; it comes with a 403 that is not about permission.
INVALID_MESSAGE_CODE = "SMN.0009"

# --- signatures and topics -----------------------------------------------------------------------------
#: Characters a message published to a topic must not hold (SMN refuses it).
TOPIC_FORBIDDEN = "[]【】"
# With message_include_sign_flag "true", SMN requires the message to start with its signature in 【】.
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")
# The signature a caller writes in that mode, as the console approves them: 【name】, 1 to 16 characters.
_SIGNATURE = re.compile(r"【[^【】\[\]\s]{1,16}】")

# Digits with an optional leading "+", and the separators SMN accepts (its own example has "1867669-6912").
_PHONE = re.compile(r"\+?[0-9][0-9 /\-]{1,31}")
_SEPARATORS = re.compile(r"[ /\-]")
_EXTEND_SRC_ID = re.compile(r"[0-9]{1,8}")
_SIGN_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TOPIC_URN = re.compile(r"urn:smn:[A-Za-z0-9\-]+:[A-Za-z0-9]+:[A-Za-z0-9][A-Za-z0-9_\-]{0,254}")


def check_endpoint(value: object, field: str = "endpoint") -> str:
    """Return ``value`` if it is a phone number SMN accepts, else raise naming ``field``."""
    if not isinstance(value, str):
        raise invalid(field, value, "a phone number must be a string")
    if not _PHONE.fullmatch(value):
        raise invalid(field, value, "not a phone number (digits, optional leading '+', '-', '/' or spaces)")
    return value


def check_endpoints(values: Iterable[object], field: str = "endpoints") -> list[str]:
    """Validate phone numbers and de-duplicate them by exact string, keeping their order."""
    if isinstance(values, (str, bytes)):
        raise invalid(field, values, "must be a list of phone numbers, not one string")
    seen: dict[str, None] = {}
    for index, value in enumerate(values):
        seen.setdefault(check_endpoint(value, f"{field}[{index}]"), None)
    if not seen:
        raise invalid(field, [], "at least one phone number is needed")
    return list(seen)


def check_message(value: object, field: str = "message", limit: int = MAX_MESSAGE_LENGTH) -> str:
    """Return ``value`` if it is a non-empty string of at most ``limit`` characters, valid as UTF-8."""
    if not isinstance(value, str):
        raise invalid(field, value, "must be a string")
    if not value.strip():
        raise invalid(field, value, "must not be empty")
    if len(value) > limit:
        raise SMNConfigError(f"{field} is {len(value)} characters; SMN takes at most {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(field, value, f"is not valid Unicode text ({exc.reason})") from None
    return value


def normalize_flag(value: object, field: str = "message_include_sign_flag") -> str | None:
    """Turn a boolean setting (``True``, ``"yes"``, ``"0"``, ...) into SMN's string form; ``None`` stays."""
    if value is None:
        return None
    flag = to_bool(value)
    if flag is None:
        raise invalid(field, value, "must be true or false (or yes/no, 1/0)")
    return "true" if flag else "false"


def check_sign(sign_id: object, flag: object) -> tuple[str | None, str | None]:
    """Check that exactly one of ``sign_id`` and ``message_include_sign_flag="true"`` is given.

    Returns:
        ``(sign_id, flag)`` with the flag in SMN's string form.
    """
    normalized = normalize_flag(flag)
    if sign_id is not None and normalized is not None:
        raise SMNConfigError(
            f"sign_id={shown(sign_id)} and message_include_sign_flag={normalized!r}: give only one "
            "(sign_id lets SMN add the signature; the flag says the message carries it in 【】)"
        )
    if sign_id is None and normalized is None:
        raise SMNConfigError("sign_id or message_include_sign_flag='true' is required by SmsBatchPublish")
    if normalized == "false":
        raise invalid("message_include_sign_flag", flag, "'false' needs sign_id; give sign_id instead")
    if sign_id is not None and not (isinstance(sign_id, str) and _SIGN_ID.fullmatch(sign_id)):
        raise invalid("sign_id", sign_id, "must be the signature id from the SMN console (letters, digits)")
    return (sign_id if isinstance(sign_id, str) else None), normalized


def _check_utf8_size(value: object, field: str, limit: int) -> str | None:
    """Return ``value`` if it is ``None`` or a string of at most ``limit`` bytes in UTF-8."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(field, value, "must be a string")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise invalid(field, value, f"is {size} bytes; at most {limit}")
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
        raise invalid(field, value, "must be 1 to 8 digits")
    return text


def check_topic_urn(value: object, field: str = "topic_urn") -> str:
    """Return ``value`` if it looks like ``urn:smn:{region}:{project_id}:{topic_name}``."""
    if not (isinstance(value, str) and _TOPIC_URN.fullmatch(value)):
        raise invalid(field, value, "must look like urn:smn:{region}:{project_id}:{topic_name}")
    return value


def check_subject(value: object, field: str = "subject") -> str | None:
    """Return ``value`` if it is ``None`` or a string of at most 512 bytes in UTF-8."""
    return _check_utf8_size(value, field, MAX_SUBJECT_BYTES)


def check_signature(value: object, field: str = "signature") -> str:
    """Return ``value`` stripped if it is an approved signature's shape: ``【name】``, 1 to 16 inside."""
    if not (isinstance(value, str) and _SIGNATURE.fullmatch(value.strip())):
        raise invalid(field, value, "must be your approved signature in 【】, e.g. '【XX商城】'")
    return value.strip()


def sms_options(sign_id: object, flag: object, extend_code: object, extend_src_id: object) -> dict[str, str]:
    """Check the SmsBatchPublish fields other than ``endpoints`` and ``message``; keep those that are set."""
    checked_sign, checked_flag = check_sign(sign_id, flag)
    candidates = {
        "sign_id": checked_sign,
        "message_include_sign_flag": checked_flag,
        "extend_code": check_extend_code(extend_code),
        "extend_src_id": check_extend_src_id(extend_src_id),
    }
    return {name: value for name, value in candidates.items() if value is not None}


def check_sms_message(message: object, options: Mapping[str, str]) -> str:
    """Check an SMS message for the :func:`sms_options` it goes with: with the flag, 【sign】 comes first."""
    text = check_message(message)
    if options.get("message_include_sign_flag") == "true" and not _SIGNATURE_HEAD.match(text):
        raise SMNConfigError(
            "message must start with its signature in 【】 when message_include_sign_flag is true"
        )
    return text


def check_topic_message(message: object) -> str:
    """Check a message published to a topic: as any SMS message, and without ``[]``/``【】``."""
    text = check_message(message)
    if any(char in text for char in TOPIC_FORBIDDEN):
        raise SMNConfigError("message must not contain [ ] 【 】 when published to a topic (SMN refuses it)")
    return text


def bare_number(number: str) -> str:
    """Return ``number`` without the separators SMN accepts: its answers may drop them."""
    return _SEPARATORS.sub("", number)


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
