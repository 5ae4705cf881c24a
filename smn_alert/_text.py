"""SMS text for a phone: scrub secrets, make any text safe, fit it to the limit, and count billed segments."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Literal, Union

from smn_alert._secret_words import SECRET_SHAPES
from smn_alert._smn import MAX_MESSAGE_LENGTH, TOPIC_FORBIDDEN
from smn_alert.errors import SMNConfigError

#: An SMS message is at most this many characters (SmsBatchPublish, and what topic SMS subscribers get).
DEFAULT_MAX_LENGTH = MAX_MESSAGE_LENGTH
#: What a secret is replaced with; ``*`` is GSM-7, so redaction never makes an SMS bill as UCS-2.
REDACTED = "***"
# Lookalikes of the brackets a topic refuses: CJK, full-width and mathematical ones, opening then closing.
_LOOKALIKE_OPENING = "\u3014\uff3b\u3016\u3018\u27e6"
_LOOKALIKE_CLOSING = "\u3015\uff3d\u3017\u3019\u27e7"
#: Brackets that must not reach a phone, and what replaces them: those a topic refuses
#: (:data:`~smn_alert._smn.TOPIC_FORBIDDEN`, listed as pairs: ``[]【】``), and, since with a sign ``【】`` in
#: the text could fake a signature, their lookalikes too.
BRACKETS = {
    **dict.fromkeys(TOPIC_FORBIDDEN[0::2] + _LOOKALIKE_OPENING, "("),
    **dict.fromkeys(TOPIC_FORBIDDEN[1::2] + _LOOKALIKE_CLOSING, ")"),
}

RedactPattern = Union[str, "re.Pattern[str]"]

# --- redaction ---------------------------------------------------------------------------------------
# The built-in patterns, each with its examples, are the table SECRET_SHAPES; applied in its order.
_BUILTIN = tuple(re.compile(shape.pattern) for shape in SECRET_SHAPES)
_CHECKS = {pattern: shape.check for pattern, shape in zip(_BUILTIN, SECRET_SHAPES) if shape.check is not None}


# What went wrong in a regular expression, in re's own words but never the pattern's: re's message may
# quote part of the pattern ("unknown group name 'hunter2'"), and a pattern may be a literal secret.
_RE_ERROR_KINDS = sorted(
    (
        "bad character in group name", "bad character range", "bad escape", "bad group number",
        "bad inline flags", "cannot refer to an open group",
        "cannot refer to group defined in the same pattern",
        "conditional backref with more than two branches", "global flags not at the start of the expression",
        "incomplete escape", "invalid group reference", "look-behind requires fixed-width pattern",
        "looks too much behind", "min repeat greater than max repeat", "missing ), unterminated comment",
        "missing ), unterminated subpattern", "missing group name", "missing", "multiple repeat",
        "nothing to repeat", "octal escape value", "redefinition of group name", "too many groups",
        "unbalanced parenthesis", "undefined character name", "unexpected end of pattern",
        "unknown extension", "unknown flag", "unknown group name", "unterminated character set",
    ),
    key=len,
    reverse=True,  # the longest first: "missing ), unterminated subpattern" before "missing"
)  # fmt: skip


def _re_error_kind(error: re.error) -> str:
    """``re.error`` described without a character of the pattern: its kind and position only."""
    message = error.msg if isinstance(error.msg, str) else ""
    kind = next((kind for kind in _RE_ERROR_KINDS if message.startswith(kind)), "error")
    return kind if error.pos is None else f"{kind} at position {error.pos}"


def _compile_one(index: int, pattern: object) -> re.Pattern[str]:
    """Compile one user pattern; an error names its place in the list, never any of its text."""
    where = f"redact_patterns[{index}]"
    if isinstance(pattern, re.Pattern):
        if isinstance(pattern.pattern, str):
            return pattern
        raise SMNConfigError(f"{where}: a pattern must be a string, not a bytes pattern")
    if not isinstance(pattern, str):
        raise SMNConfigError(f"{where}: a pattern must be a string, not {type(pattern).__name__}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        kind = _re_error_kind(exc)
    # Raised outside the handler, so that re's error (whose text may quote the pattern) is not its context.
    raise SMNConfigError(
        f"{where}: not a valid regular expression ({kind}); the pattern is not shown, as it may be a secret"
    )


def compile_user_patterns(extra: Iterable[RedactPattern] | RedactPattern = ()) -> tuple[re.Pattern[str], ...]:
    """Compile the user's own ``redact_patterns`` (the one place they are compiled and checked).

    Args:
        extra: Regular expressions (strings or compiled). In a user pattern the whole match is the secret,
            or group 1 if the pattern has groups (a group named ``secret`` wins). One string is one pattern.

    Raises:
        SMNConfigError: A pattern does not compile or is not a str pattern. The message names
            ``redact_patterns[i]`` and what is wrong, never the pattern (it may be a literal secret).
    """
    if isinstance(extra, (str, re.Pattern)):
        extra = (extra,)
    return tuple(_compile_one(index, pattern) for index, pattern in enumerate(extra))


def compile_redactions(extra: Iterable[RedactPattern] | RedactPattern = ()) -> tuple[re.Pattern[str], ...]:
    """Return the built-in secret patterns followed by the user's own (see :func:`compile_user_patterns`)."""
    return _BUILTIN + compile_user_patterns(extra)


#: The built-in patterns alone, what :func:`redact` uses when not told otherwise.
DEFAULT_REDACTIONS = compile_redactions()


def _replacer(pattern: re.Pattern[str]) -> Callable[[re.Match[str]], str]:
    """Build the replacement that hides the secret group of ``pattern`` and keeps the rest of the match."""
    group: int | str = "secret" if "secret" in pattern.groupindex else (1 if pattern.groups else 0)
    check = _CHECKS.get(pattern)

    def replace(match: re.Match[str]) -> str:
        start, end = match.span(group)
        if start >= end or (check is not None and not check(match.group(group))):
            return match.group(0)  # nothing to hide: the group is empty, or what matched is not a secret
        whole, base = match.group(0), match.start()
        return f"{whole[: start - base]}{REDACTED}{whole[end - base :]}"

    return replace


def redact(text: str, patterns: Iterable[re.Pattern[str]] = DEFAULT_REDACTIONS) -> str:
    """Replace what looks like a secret in ``text`` with ``***``, keeping key names: ``password=***``.

    The built-in shapes (key names, command-line flags, ``user:pass@host``, private keys, token formats,
    card numbers ...) are the rows of ``smn_alert._secret_words.SECRET_SHAPES``, each with its examples.

    Args:
        text: Any text; apply this before cutting, so a secret is seen whole.
        patterns: Usually :func:`compile_redactions` (built-ins plus the user's).
    """
    for pattern in patterns:
        text = pattern.sub(_replacer(pattern), text)
    return text


# --- sanitizing ----------------------------------------------------------------------------------------
_TRANSLATION: dict[int, Union[str, None]] = {
    **{code: " " for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if code != 0x0A},
    **{ord(bracket): replacement for bracket, replacement in BRACKETS.items()},
    0x2028: "\n",  # line and paragraph separators are line breaks a phone may not know
    0x2029: "\n",
    # Invisible direction overrides could make a page read differently from what was logged.
    **dict.fromkeys([0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0xFEFF]),
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPACES = re.compile(r"[^\S\n]+")
_NEWLINES = re.compile(r" ?\n\s*")


def sanitize(text: str) -> str:
    """Make any text safe for an SMS.

    Brackets (``[]``, ``【】`` and lookalikes) become parentheses, lone surrogates become U+FFFD (a
    surrogate pair written as two code points is joined), control characters other than newline become
    spaces, whitespace runs collapse to one space or one newline, and the ends are stripped.
    """
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    text = _NEWLINES.sub("\n", _SPACES.sub(" ", text.translate(_TRANSLATION)))
    return text.strip()


# --- fitting -------------------------------------------------------------------------------------------
_ZWJ = "\u200d"
_WORD_WINDOW = 12  # how far back a cut may move to land on a word boundary


def _joined(prev: str, char: str) -> bool:
    """Tell whether ``char`` belongs with ``prev``, so that cutting between them would split a sequence."""
    if prev == _ZWJ:
        return True
    code = ord(char)
    if code < 0x300:
        return False
    if 0xDC00 <= code <= 0xDFFF:  # second half of a pair written as two code points
        return 0xD800 <= ord(prev) <= 0xDBFF
    return (
        code == 0x200D
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE01EF  # emoji tag characters, variation selectors supplement
        or 0x1160 <= code <= 0x11FF  # Hangul vowel and final jamo
        or 0xD7B0 <= code <= 0xD7FF
        or unicodedata.category(char).startswith("M")  # combining marks, spacing marks, keycap
    )


def _is_flag_half(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _splits_flag(text: str, index: int) -> bool:
    """Tell whether ``index`` falls inside a pair of regional indicators (a flag)."""
    if not (_is_flag_half(text[index]) and _is_flag_half(text[index - 1])):
        return False
    start = index - 1
    while start > 0 and _is_flag_half(text[start - 1]):
        start -= 1
    return (index - start) % 2 == 1


def _safe_cut(text: str, index: int) -> int:
    """Move ``index`` back until ``text[:index]`` ends on a whole character sequence."""
    while index > 0 and (_joined(text[index - 1], text[index]) or _splits_flag(text, index)):
        index -= 1
    return index


def _word_cut(text: str, index: int) -> int:
    """Move ``index`` back to a whitespace within the last few characters, if there is one."""
    # A short text keeps most of itself: a whole word is not worth losing half the room.
    for candidate in range(index, index - min(_WORD_WINDOW, index // 4), -1):
        if text[candidate].isspace():
            return candidate
    return index


def fit_to_length(text: str, max_length: int, marker: str = "…") -> str:
    """Return ``text`` if it has at most ``max_length`` characters, else cut it and end it with ``marker``.

    The cut prefers a word boundary in the last dozen characters and never splits a surrogate pair, a
    base character from its combining marks, a ZWJ emoji sequence, a variation selector or skin tone from
    its emoji, or a flag's pair of regional indicators: such a sequence is dropped whole.

    Args:
        text: The text to fit; lengths are Python ``len`` (what SMN counts as characters).
        max_length: Most characters in the result, marker included.
        marker: What shows the text was cut. Use ``"..."`` for text that is otherwise GSM-7.

    Raises:
        ValueError: ``max_length`` leaves no room for one character and the marker.
    """
    if max_length < len(marker) + 1:
        raise ValueError(f"max_length={max_length} leaves no room for text and the marker {marker!r}")
    if len(text) <= max_length:
        return text
    cut = _safe_cut(text, _word_cut(text, max_length - len(marker)))
    return text[:cut].rstrip() + marker


# --- segments ------------------------------------------------------------------------------------------
# GSM 03.38: the basic set (ESC left out: it is not a character) and the extension table (2 septets each).
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = "^{}\\[~]|€\f"
_NOT_GSM = re.compile(f"[^{re.escape(_GSM_BASIC + _GSM_EXTENSION)}]")
_GSM_EXTENDED = re.compile(f"[{re.escape(_GSM_EXTENSION)}]")


def sms_encoding(text: str) -> Literal["GSM-7", "UCS-2"]:
    """Return how ``text`` is sent: ``"GSM-7"`` if every character is in GSM 03.38, else ``"UCS-2"``."""
    return "UCS-2" if _NOT_GSM.search(text) else "GSM-7"


def count_segments(text: str, *, ucs2: bool = False) -> int:
    """Return how many SMS segments ``text`` takes.

    GSM-7: one segment up to 160 septets (extension characters such as ``{`` or ``€`` take two), else one
    per 153. UCS-2: one up to 70 UTF-16 code units (an emoji takes two), else one per 67. Empty: 0.
    With ``ucs2`` the text counts as UCS-2 whatever it holds (mainland China numbers bill that way).
    """
    if not text:
        return 0
    if not ucs2 and sms_encoding(text) == "GSM-7":
        units, single, multi = len(text) + len(_GSM_EXTENDED.findall(text)), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-le", "surrogatepass")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


def billed_segments(text: str, *, signature: str = "", mainland: bool = False) -> int:
    """Return the SMS a message costs per recipient, the signature included.

    SMN prepends the signature (``【华为云】``) itself, and it counts: a Chinese signature makes even an
    English message bill as UCS-2 (70 characters, then 67 per segment). Empty text costs nothing.

    Args:
        text: The message as sent.
        signature: The signature text as the phone shows it, brackets included.
        mainland: The recipient is a mainland China number: always billed as UCS-2.
    """
    return count_segments(signature + text, ucs2=mainland) if text else 0
