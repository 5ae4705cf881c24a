"""Whom a pager pages, and the SMN fields each of its requests carries: from arguments or the environment.

SMS mode: the numbers, the sign (``sign_id``, or the flag with the ``signature`` the caller writes) and the
extend fields; topic mode: the topic URN and its ``subject``. Exactly one mode. The fields are checked here,
once, by SMN's rules (``_smn``), so the sender built from them checks only each page's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from smn_alert import _smn
from smn_alert._values import from_environ, invalid, shown
from smn_alert.errors import SMNConfigError

#: Environment variable holding the on-call numbers, comma- or semicolon-separated.
ENV_ENDPOINTS = "SMN_ALERT_ENDPOINTS"
#: Environment variable holding the topic URN to publish to instead of numbers.
ENV_TOPIC_URN = "SMN_ALERT_TOPIC_URN"
#: Environment variable holding the SMS signature id.
ENV_SIGN_ID = "SMN_ALERT_SIGN_ID"

_SMS_ONLY = ("sign_id", "message_include_sign_flag", "signature", "extend_code", "extend_src_id")
_SEPARATORS = re.compile(r"[,;]")


class RequestFields(NamedTuple):
    """The checked fields of a pager's requests; those of the other mode are empty or ``None``."""

    endpoints: tuple[str, ...]  # SMS mode: distinct numbers, in order; empty in topic mode
    topic_urn: str | None
    subject: str | None
    sign_id: str | None
    message_include_sign_flag: str | None  # "true" or None
    signature: str | None
    extend_code: str | None
    extend_src_id: str | None


def resolve_request_fields(given: Mapping[str, object], environ: Mapping[str, str]) -> RequestFields:
    """Resolve and check the request fields from the settings ``given`` (no ``None`` values) and ``environ``.

    Raises:
        SMNConfigError: A field is missing, invalid or of the other mode; the message names it.
    """
    endpoints, topic_urn = _resolve_target(given, environ)
    if endpoints:
        return RequestFields(endpoints, None, None, *_resolve_sms(given, environ))
    return RequestFields((), topic_urn, _resolve_topic(given), None, None, None, None, None)


def _parse_endpoints(name: str, value: object) -> tuple[str, ...]:
    """Validate numbers given as a list, or as one comma- or semicolon-separated string."""
    if isinstance(value, str):
        items: list[object] = list(_SEPARATORS.split(value))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise invalid(name, value, "must be a list of phone numbers or one comma-separated string")
    items = [item.strip() if isinstance(item, str) else item for item in items]
    items = [item for item in items if item != ""]
    for index, item in enumerate(items):
        if isinstance(item, int) and not isinstance(item, bool):
            # YAML and JSON read +8613800000000 as a number and silently drop the "+".
            raise invalid(
                f"{name}[{index}]",
                item,
                "a phone number must be a string: quote it, or a leading '+' or '0' is lost",
            )
    if not items:
        raise invalid(name, value, "at least one phone number is needed")
    return tuple(_smn.check_endpoints(items, name))


def _resolve_target(
    given: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[tuple[str, ...], str | None]:
    """Pick SMS numbers or a topic: explicit arguments first, then the environment; exactly one."""
    endpoints, topic_urn = given.get("endpoints"), given.get("topic_urn")
    if endpoints is not None and topic_urn is not None:
        raise invalid("topic_urn", topic_urn, "give either endpoints or topic_urn, not both")
    if endpoints is not None:
        return _parse_endpoints("endpoints", endpoints), None
    if topic_urn is not None:
        return (), _smn.check_topic_urn(topic_urn)
    env_endpoints, env_topic = from_environ(environ, ENV_ENDPOINTS), from_environ(environ, ENV_TOPIC_URN)
    if env_endpoints is not None and env_topic is not None:
        raise SMNConfigError(
            f"{ENV_ENDPOINTS} and {ENV_TOPIC_URN} are both set: set one, or pass endpoints= or topic_urn="
        )
    if env_endpoints is not None:
        return _parse_endpoints(ENV_ENDPOINTS, env_endpoints), None
    if env_topic is not None:
        return (), _smn.check_topic_urn(env_topic, ENV_TOPIC_URN)
    raise SMNConfigError(
        f"endpoints or topic_urn is required (or set {ENV_ENDPOINTS} or {ENV_TOPIC_URN} in the environment)"
    )


def _resolve_sms(
    given: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """Check the SMS-only fields: ``(sign_id, flag, signature, extend_code, extend_src_id)``."""
    if given.get("subject") is not None:
        raise invalid("subject", given["subject"], "is only used with topic_urn, not with endpoints")
    flag = _smn.normalize_flag(given.get("message_include_sign_flag"))
    # "false" is SMN's default and says nothing, so it may stand beside sign_id.
    flag = flag if flag == "true" else None
    sign_id = given.get("sign_id")
    if sign_id is None and flag is None:
        sign_id = from_environ(environ, ENV_SIGN_ID)
    if sign_id is None and flag is None:
        raise SMNConfigError(
            "sign_id or message_include_sign_flag='true' is required with endpoints "
            f"(sign_id may also come from {ENV_SIGN_ID})"
        )
    checked_sign, checked_flag = _smn.check_sign(sign_id, flag)
    signature = _check_signature(given.get("signature"), checked_flag)
    extend_code = _smn.check_extend_code(given.get("extend_code"))
    extend_src_id = _smn.check_extend_src_id(given.get("extend_src_id"))
    return checked_sign, checked_flag, signature, extend_code, extend_src_id


def _check_signature(value: object, flag: str | None) -> str | None:
    """With the flag, the caller writes the signature: require ``【name】``; without it, refuse one."""
    if flag != "true":
        if value is not None:
            raise invalid("signature", value, "is only used with message_include_sign_flag='true'")
        return None
    if value is None:
        raise SMNConfigError(
            "message_include_sign_flag='true' needs signature='【your approved signature】': "
            "SMN expects it at the head of every message"
        )
    return _smn.check_signature(value)


def _resolve_topic(given: Mapping[str, object]) -> str | None:
    """Refuse SMS-only fields in topic mode; return the checked ``subject``."""
    misplaced = [f"{name}={shown(given[name])}" for name in _SMS_ONLY if given.get(name) is not None]
    if misplaced:
        raise SMNConfigError(f"{', '.join(misplaced)}: only used with endpoints, not with topic_urn")
    return _smn.check_subject(given.get("subject"))
