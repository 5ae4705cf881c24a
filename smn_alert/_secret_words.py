"""The words that make a key name secret (``password``, ``api_key``, ``HUAWEICLOUD_SDK_SK`` ...).

One list for both places that need it: the text redaction patterns, and the structlog adapter, which
masks the value of a secret-named key before any text is written.
"""

from __future__ import annotations

import re

__all__ = ["KEY_WORDS", "is_secret_key"]

#: Regular-expression alternatives for secret key names, matched case-insensitively at a name's end.
KEY_WORDS = (
    r"passw(?:or)?d|passphrase|pwd|secret|token|credentials?|apikey"
    r"|(?:api|access|secret|private|signing|encryption)[_-]?key"
)

_SECRET_KEY = re.compile(r"(?i)(?:" + KEY_WORDS + r")$|(?:^|[_-])(?:pass|sk|authorization|cookie)$")


def is_secret_key(name: object) -> bool:
    """Tell whether a key called ``name`` holds a secret (``db_password``, ``apiKey``, ``aws_sk``)."""
    return isinstance(name, str) and _SECRET_KEY.search(name) is not None
