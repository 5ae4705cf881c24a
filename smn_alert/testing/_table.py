"""``FakeSMNServer``'s own table of what SMN accepts, written from the SmsBatchPublish page (the seed).

It imports nothing of the client's validation (``smn_alert._smn``): the fake must refuse what SMN refuses
even when the client's rules are wrong, or no test could notice that they are. Each row quotes the seed's
words for its rule (``seed``); rows for topic publishing come from ``smn-api.md`` section 2 (``seed`` empty).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from smn_alert.testing._wire import CODE_INVALID

#: 手机号码个数不能超过1000
MAX_ENDPOINTS = 1000
#: 长度不超过490个字符 (characters, so 490 Chinese characters are fine)
MAX_MESSAGE_CHARS = 490
#: 长度小于等于32个字节 (bytes of UTF-8)
MAX_EXTEND_CODE_BYTES = 32
#: 8位以内的数字 (1 to 8 ASCII digits)
MAX_EXTEND_SRC_ID_DIGITS = 8
#: A topic publish's ``subject``: at most 512 bytes of UTF-8 (smn-api.md section 2).
MAX_SUBJECT_BYTES = 512
#: 终端节点必须是电话号码: digits after an optional ``+``, with the ``-`` of the seed's own example
#: ``1867669-6912`` (and ``/`` or spaces, as the old SDKs allowed); 2 to 32 after the ``+``.
ENDPOINT_RULE = re.compile(r"\+?[0-9][0-9 /-]{1,31}")
#: ``urn:smn:{region}:{project_id}:{topic_name}``; a name starts with a letter or digit, at most 255 long.
TOPIC_URN = re.compile(r"urn:smn:[a-zA-Z0-9-]+:[a-zA-Z0-9]+:[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}")

_FLAG = "message_include_sign_flag"
_SIGN_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_SRC_ID = re.compile(f"[0-9]{{1,{MAX_EXTEND_SRC_ID_DIGITS}}}")
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")
_TOPIC_FORBIDDEN = re.compile(r"[\[\]【】]")


@dataclass(frozen=True)
class Rule:
    """One rule: the body breaks it when ``broken(body)``; SMN then answers ``status``/``code``/``message``.

    Rules are checked in table order and the first broken one is answered, so a rule may rely on the
    ones above it (the count of ``endpoints`` is only looked at once they are known to be a list).
    """

    field: str
    seed: str  # the seed's words for this rule; "" for a rule from smn-api.md
    status: int
    code: str
    message: str
    broken: Callable[[Mapping[str, Any]], bool]


def _text(value: object, max_chars: int) -> bool:
    """Tell whether ``value`` is a non-blank string of at most ``max_chars`` characters, valid Unicode."""
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" gives
        return False
    return True


def _bytes_at_most(value: object, limit: int) -> bool:
    """Tell whether ``value`` is absent, or a string of at most ``limit`` bytes in UTF-8."""
    return value is None or (isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) <= limit)


def _string_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) for item in value)


def _optional(pattern: re.Pattern[str], value: object) -> bool:
    return value is None or (isinstance(value, str) and pattern.fullmatch(value) is not None)


SMS_RULES: tuple[Rule, ...] = (
    Rule("endpoints", "String列表", 400, "SMN.0012",
         "Parameter: endpoints must be a non-empty list of phone-number strings.",
         lambda body: not _string_list(body.get("endpoints"))),
    Rule("endpoints", "手机号码个数不能超过1000", 400, "SMN.0159",
         f"Too many endpoints: at most {MAX_ENDPOINTS} per request.",
         lambda body: len(body["endpoints"]) > MAX_ENDPOINTS),
    Rule("message", "长度不超过490个字符", 403, "SMN.0009",
         f"message must be a non-empty string of at most {MAX_MESSAGE_CHARS} characters.",
         lambda body: not _text(body.get("message"), MAX_MESSAGE_CHARS)),
    Rule(_FLAG, '参数为"true" 或 "false"', 400, CODE_INVALID,
         f'{_FLAG} must be the string "true" or "false" (a JSON boolean is refused).',
         lambda body: body.get(_FLAG) not in (None, "true", "false")),
    Rule("message", "将签名放置于“【】”括号中", 403, "SMN.0009",
         f'With {_FLAG} "true" the message must start with 【sign】.',
         lambda body: body.get(_FLAG) == "true" and not _SIGNATURE_HEAD.match(body["message"])),
    Rule("sign_id", "当message_include_sign_flag参数不传递时", 400, "SMN.0080",
         f'sign_id is required unless {_FLAG} is "true".',
         lambda body: body.get("sign_id") is None and body.get(_FLAG) != "true"),
    Rule("sign_id", "短信签名ID在创建短信签名时由系统自动生成", 400, "SMN.0080",
         "sign_id must be a signature id: 1 to 64 letters, digits, '-' or '_'.",
         lambda body: not _optional(_SIGN_ID, body.get("sign_id"))),
    Rule("extend_code", "长度小于等于32个字节", 400, CODE_INVALID,
         f"extend_code must be a string of at most {MAX_EXTEND_CODE_BYTES} bytes.",
         lambda body: not _bytes_at_most(body.get("extend_code"), MAX_EXTEND_CODE_BYTES)),
    Rule("extend_src_id", "8位以内的数字", 400, CODE_INVALID,
         f"extend_src_id must be a string of 1 to {MAX_EXTEND_SRC_ID_DIGITS} digits.",
         lambda body: not _optional(_SRC_ID, body.get("extend_src_id"))),
)  # fmt: skip

TOPIC_RULES: tuple[Rule, ...] = (
    Rule("message", "", 403, "SMN.0009",
         f"message must be a non-empty string of at most {MAX_MESSAGE_CHARS} characters.",
         lambda body: not _text(body.get("message"), MAX_MESSAGE_CHARS)),
    Rule("message", "", 400, CODE_INVALID,
         "A message published to a topic must not contain [ ] 【 】.",
         lambda body: _TOPIC_FORBIDDEN.search(body["message"]) is not None),
    Rule("subject", "", 400, CODE_INVALID,
         f"subject must be a string of at most {MAX_SUBJECT_BYTES} bytes.",
         lambda body: not _bytes_at_most(body.get("subject"), MAX_SUBJECT_BYTES)),
)  # fmt: skip
