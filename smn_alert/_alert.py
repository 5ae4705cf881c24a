"""The :class:`Alert` snapshot taken on the application thread, and its fingerprint.

An alert holds only what a page needs (level, logger, message template and text, exception type, value and
innermost frame, time), so building one costs far less than formatting a traceback, and the record another
handler sees is never touched. Text is capped here so that a flood of huge messages cannot eat memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, NamedTuple

from smn_alert._secret_words import is_secret_key, masked

#: Longest message or exception text kept in a snapshot; an SMS shows at most 490 characters anyway,
#: and the margin leaves room for redaction to see a whole secret before the text is cut.
MAX_SNAPSHOT_CHARS = 2048

#: What makes two alerts "the same problem": logger, level, template, exception type and innermost frame.
Fingerprint = tuple[str, int, str, str, str]
#: The template of the stand-in alert that counts kinds beyond a limit (see :func:`kind_key`).
OTHER_KINDS = "<other kinds>"
# The standard levels, highest first: the bands that custom levels fall in.
_BANDS = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)

_EVENT_SKIP = frozenset(
    {"event", "level", "log_level", "logger", "logger_name", "timestamp", "exc_info", "exception", "stack",
     "positional_args"}
)  # fmt: skip
_NEEDS_QUOTES = re.compile(r"[\s'\"=]")


def _safe_str(value: object) -> str:
    """``str(value)`` capped at :data:`MAX_SNAPSHOT_CHARS`; never raises."""
    try:  # str.__str__ for str subclasses: their own __str__ may raise, or return anything
        text = str.__str__(value) if isinstance(value, str) else str(value)
        if not isinstance(text, str):
            raise TypeError("__str__ returned a non-string")
    except Exception:
        try:
            text = f"<unprintable {type(value).__name__}>"
        except Exception:
            text = "<unprintable>"
    return text if len(text) <= MAX_SNAPSHOT_CHARS else text[:MAX_SNAPSHOT_CHARS]


# One %-placeholder: "%%", "%s", "%-10.3f", "%*d", "%(name)s". A name stops at "%" too, so that a
# template of a million "%(" is still scanned in linear time.
_PLACEHOLDER = re.compile(
    r"%(?:\((?P<key>[^)%]*)\))?[#0 +-]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?(?P<conv>.)?", re.S
)


def _placeholders(template: str) -> int:
    """How many arguments ``template`` asks for: ``%%`` none, ``%*.*f`` three."""
    count = 0
    for found in _PLACEHOLDER.finditer(template):
        if found["conv"] != "%":
            count += 1 + (found["width"] == "*") + (found["prec"] == "*")
    return count


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _mismatch(template: object, args: object, error: BaseException) -> str:
    """Say why ``template % args`` failed without showing any argument.

    The arguments are not shown, not even redacted next to the names the template gives them: when the
    counts differ, which value belongs to which name is exactly what is unknown, so a password could
    land next to ``user=``. Only counts, and names the template itself holds, are said.
    """
    text = template if isinstance(template, str) else _safe_str(template)  # logging formats str(msg)
    count = _placeholders(text)
    wanted = _plural(count, "placeholder")
    if isinstance(args, Mapping):
        key = error.args[0] if isinstance(error, KeyError) and error.args else None
        missing = f", none named {key}" if isinstance(key, str) and f"%({key})" in text else ""
        return f"{wanted}, a mapping of {_plural(len(args), 'key')}{missing}"
    given = len(args) if isinstance(args, tuple) else 1
    said = f"{wanted}, {_plural(given, 'argument')}"
    return said if count != given else f"{said}: {type(error).__name__}"  # same count: a wrong type


def _bad_arguments(template: object, args: object, error: BaseException) -> str:
    """Show the template, capped, and why its arguments did not fit it; never an argument's value."""
    try:
        note = _mismatch(template, args, error)
    except Exception:
        note = "they do not fit the message"
    return f"{_safe_str(template)} (bad log arguments: {note})"


def _event_text(event_dict: Mapping[str, Any]) -> str:
    """Render the event as structlog's ``PositionalArgumentsFormatter`` will: ``event % args``.

    ``SMNProcessor`` sits before that formatter, so ``positional_args`` are still apart; a page must read
    as the log line will, and the arguments then go through redaction with the text around them.
    """
    event = event_dict.get("event", "")
    args = event_dict.get("positional_args")
    try:
        if not args or not isinstance(event, str):
            return _safe_str(event)
        if len(args) == 1 and isinstance(args[0], dict) and args[0]:
            args = args[0]  # one non-empty dict: the mapping for %(name)s, as logging and structlog do
        return _safe_str(str.__mod__(event, args))
    except Exception as error:
        return _bad_arguments(event, args, error)


def _kv_value(value: object) -> str:
    """Render a value for ``key=value``: quoted when it holds spaces or quotes, as structlog does.

    Quoting keeps a value whole, so redaction hides all of ``password='x y z'``, not just ``x``; a
    secret-named key inside a dict (``ctx={"user": "bob", "password": "pw"}``) is masked by name.
    """
    with contextlib.suppress(Exception):  # changed while read (another thread): shown as is, still redacted
        value = masked(value, MAX_SNAPSHOT_CHARS)
    text = _safe_str(value)
    if not _NEEDS_QUOTES.search(text):
        return text
    # Wrap in the quote the text lacks, never escaping one: an escaped quote (\') would hide where a
    # quoted secret inside it ends, and redaction must see password='x y' whole. (A secret-named key's
    # value never gets here: it is masked by name.)
    return f"'{text}'" if "'" not in text else f'"{text}"'


#: The type shown for an exception whose class cannot tell its own name (its metaclass raises).
UNKNOWN_EXCEPTION = "<unknown exception>"


def _type_name(exc_type: type) -> str:
    """``module.QualName`` of an exception class, or :data:`UNKNOWN_EXCEPTION`; never raises.

    A metaclass may raise on any attribute access, or answer with a non-string: the page still goes out.
    """
    try:
        module = getattr(exc_type, "__module__", "builtins")
        name = getattr(exc_type, "__qualname__", None) or exc_type.__name__
        if not isinstance(name, str) or not isinstance(module, str):
            return UNKNOWN_EXCEPTION
        return name if module in ("builtins", "__main__") else f"{module}.{name}"
    except Exception:
        return UNKNOWN_EXCEPTION


def _innermost_frame(tb: TracebackType | None) -> str:
    """``file.py:42 in func`` for the frame where the exception was raised, or ``""``."""
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in {code.co_name}"


def _exc_triple(exc_info: object) -> Any:
    """``exc_info`` in any of its accepted forms as ``(type, value, traceback)``, or None."""
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    elif exc_info is True:
        exc_info = _current_exc_info()
    if not (isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[0], type)):
        return None
    return exc_info


def _exc_parts(exc_info: object) -> tuple[str, str, str]:
    """Exception type, value and innermost frame from ``exc_info`` in any of its accepted forms."""
    triple = _exc_triple(exc_info)
    if triple is None:
        return "", "", ""
    exc_type, value, tb = triple
    return _type_name(exc_type), _safe_str(value), _innermost_frame(tb)


def _exc_key(exc_info: object) -> tuple[str, str]:
    """Return the exception type and innermost frame of ``exc_info`` (what a fingerprint holds)."""
    triple = _exc_triple(exc_info) if exc_info else None
    if triple is None:
        return "", ""
    return _type_name(triple[0]), _innermost_frame(triple[2])


def _rendered_exc_parts(exception: object) -> tuple[str, str, str]:
    """Exception type, value and innermost frame from what structlog already rendered.

    ``format_exc_info`` leaves the traceback as text (last line ``Type: value``); ``dict_tracebacks`` leaves
    a list of dicts whose last one holds ``exc_type``, ``exc_value`` and ``frames``.
    """
    try:
        if isinstance(exception, str):
            return _parse_traceback_text(exception)
        if isinstance(exception, list) and exception and isinstance(exception[0], Mapping):
            raised = exception[0]  # dict_tracebacks lists the raised exception first, then its causes
            frames = raised.get("frames") or [{}]
            frame = frames[-1] if isinstance(frames[-1], Mapping) else {}
            where = f"{os.path.basename(str(frame.get('filename', '')))}:{frame.get('lineno', '')}"
            where += f" in {frame.get('name', '')}" if frame.get("name") else ""
            return _safe_str(raised.get("exc_type", "")), _safe_str(raised.get("exc_value", "")), where
    except Exception:
        pass
    return "", "", ""


_FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]*)", line (?P<line>\d+), in (?P<func>.+)$')


def _parse_traceback_text(text: str) -> tuple[str, str, str]:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "", "", ""
    exc_type, _, exc_value = lines[-1].partition(": ")
    where = ""
    for line in reversed(lines):
        found = _FRAME_LINE.match(line)
        if found:
            where = f"{os.path.basename(found['file'])}:{found['line']} in {found['func'].strip()}"
            break
    return _safe_str(exc_type.strip()), _safe_str(exc_value.strip()), where


def _current_exc_info() -> object:
    import sys

    return sys.exc_info()


class _AlertFields(NamedTuple):
    levelno: int
    levelname: str
    logger: str
    template: str
    message: str
    exc_type: str
    exc_value: str
    exc_where: str
    created: float


class Alert(_AlertFields):
    """A frozen, small snapshot of one log event that may become a page.

    A tuple underneath, as ``namedtuple`` is: immutable, and cheap to build on the application thread.

    Attributes:
        levelno: Numeric level (``logging.ERROR`` ...).
        levelname: Level name as the application logged it.
        logger: Logger name.
        template: The message before arguments were merged (``record.msg``), used to group alerts.
        message: The rendered message, capped.
        exc_type: Qualified exception type name, or ``""``.
        exc_value: ``str()`` of the exception, capped, or ``""``.
        exc_where: ``file.py:42 in func`` of the innermost frame, or ``""``.
        created: Wall-clock time of the event (``time.time()`` scale).
    """

    __slots__ = ()

    def __new__(
        cls,
        levelno: int,
        levelname: str,
        logger: str,
        template: str,
        message: str,
        exc_type: str = "",
        exc_value: str = "",
        exc_where: str = "",
        created: float | None = None,
    ) -> Alert:
        """Build the snapshot; ``created`` defaults to now."""
        when = time.time() if created is None else created
        fields = (levelno, levelname, logger, template, message, exc_type, exc_value, exc_where, when)
        return tuple.__new__(cls, fields)

    def __repr__(self) -> str:
        return f"Alert({self.levelname} {self.logger}: {self.message[:60]!r})"

    @property
    def fingerprint(self) -> Fingerprint:
        """What identifies this kind of alert when folding: same fingerprint, same problem."""
        return (self.logger, self.levelno, self.template, self.exc_type, self.exc_where)

    @classmethod
    def from_record(cls, record: logging.LogRecord) -> Alert:
        """Snapshot a stdlib ``LogRecord`` without changing it; never raises."""
        msg = record.msg
        if type(msg) is not str and isinstance(msg, Mapping):  # structlog's dict via ProcessorFormatter
            return cls.from_event_dict(msg, record.name, record.levelno, record.levelname, record.created)
        template = msg if isinstance(msg, str) else f"<{type(msg).__name__}>"
        try:
            message = _safe_str(record.getMessage())
        except Exception as error:
            message = _bad_arguments(msg, record.args, error)
        exc_type, exc_value, exc_where = _exc_parts(record.exc_info) if record.exc_info else ("", "", "")
        return cls(
            record.levelno, record.levelname, record.name, template[:MAX_SNAPSHOT_CHARS], message,
            exc_type, exc_value, exc_where, record.created,
        )  # fmt: skip

    @classmethod
    def from_event_dict(
        cls,
        event_dict: Mapping[str, Any],
        logger: str,
        levelno: int,
        levelname: str,
        created: float | None = None,
    ) -> Alert:
        """Snapshot a structlog event dict: the event is the template, key=value pairs follow it."""
        event = _event_text(event_dict)
        extras = " ".join(
            f"{key}={'***' if is_secret_key(key) else _kv_value(value)}"
            for key, value in event_dict.items()
            if key not in _EVENT_SKIP and not str(key).startswith("_")
        )
        message = f"{event} {extras}" if extras else event
        exc_info = event_dict.get("exc_info")
        exc_type, exc_value, exc_where = _exc_parts(exc_info) if exc_info else ("", "", "")
        if not exc_type and event_dict.get("exception"):  # format_exc_info / dict_tracebacks ran first
            exc_type, exc_value, exc_where = _rendered_exc_parts(event_dict["exception"])
        template = _safe_str(event_dict.get("event", ""))
        return cls(
            levelno, levelname, logger, template, message[:MAX_SNAPSHOT_CHARS],
            exc_type, exc_value, exc_where, created,
        )  # fmt: skip


# --- fingerprints without a snapshot: the calling thread's fast path ------------------------------------
def quick_fingerprint(record: logging.LogRecord) -> Fingerprint | None:
    """``Alert.from_record(record).fingerprint`` without building the snapshot, or None when not cheap.

    Neither the message nor the exception's value is rendered: a repeat the worker only counts costs a
    lookup. None (take the snapshot) for a message that is not a plain ``str`` or anything unexpected.
    """
    msg = record.msg
    if type(msg) is not str:
        return None
    exc_info = record.exc_info
    try:
        exc_type, exc_where = _exc_key(exc_info) if exc_info else ("", "")
    except Exception:
        return None
    template = msg if len(msg) <= MAX_SNAPSHOT_CHARS else msg[:MAX_SNAPSHOT_CHARS]
    return (record.name, record.levelno, template, exc_type, exc_where)


def quick_event_fingerprint(event_dict: Mapping[str, Any], logger: str, levelno: int) -> Fingerprint | None:
    """``Alert.from_event_dict(event_dict, logger, levelno, ...).fingerprint`` without the snapshot, or None.

    None when not cheap: an event that is not a plain ``str``, or a traceback structlog already rendered.
    """
    event = event_dict.get("event", "")
    if type(event) is not str:
        return None
    exc_info = event_dict.get("exc_info")
    try:
        exc_type, exc_where = _exc_key(exc_info) if exc_info else ("", "")
    except Exception:
        return None
    if not exc_type and event_dict.get("exception"):
        return None
    template = event if len(event) <= MAX_SNAPSHOT_CHARS else event[:MAX_SNAPSHOT_CHARS]
    return (logger, levelno, template, exc_type, exc_where)


# --- kinds: what folds together, and where kinds beyond a limit go ---------------------------------------
def level_band(levelno: int) -> int:
    """Return the standard level at or below ``levelno`` (``NOTSET`` below ``DEBUG``): six bands in all.

    Kinds beyond a limit are counted per band, not per numeric level, so records at thousands of custom
    levels cannot grow memory; anything at or above ``CRITICAL`` is in the ``CRITICAL`` band. A digest
    orders its kinds by band, so a custom level 55 does not push a thousand CRITICALs off the page.
    """
    return next((band for band in _BANDS if levelno >= band), logging.NOTSET)


def other_kinds_key(levelno: int) -> Fingerprint:
    """Return the fingerprint of "other kinds" in ``levelno``'s band (a CRITICAL stays one)."""
    return ("", level_band(levelno), OTHER_KINDS, "", "")


def kind_key(alert: Alert, kinds: Collection[Fingerprint], limit: int) -> tuple[Fingerprint, bool]:
    """Where ``alert`` is counted among ``kinds`` (at most ``limit``): its kind, or its band's "other kinds".

    Returns the key and whether it is "other kinds". A kind already counted keeps its place; a new one
    past the limit joins its band's "other kinds", so a flood of distinct messages cannot grow memory.
    """
    key = alert.fingerprint
    if key in kinds or len(kinds) < limit:
        return key, False
    return other_kinds_key(alert.levelno), True
