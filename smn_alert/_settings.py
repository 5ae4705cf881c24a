"""The pager's settings from keyword arguments and the environment, as plain values, validated."""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from collections.abc import Mapping
from typing import NamedTuple

from smn_alert import _smn
from smn_alert._dispatcher import DEFAULT_CAPACITY, DEFAULT_SHUTDOWN_TIMEOUT
from smn_alert._pager import DEFAULT_WINDOW
from smn_alert._ratelimit import DEFAULT_MAX_AGE
from smn_alert._request_fields import resolve_request_fields
from smn_alert._smn import mask_number
from smn_alert._store import ENV_SHARED_STATE, check_url, mask_url
from smn_alert._text import DEFAULT_MAX_LENGTH, compile_user_patterns
from smn_alert._values import MAX_DURATION, invalid, to_number
from smn_alert.errors import SMNConfigError

#: Environment variable holding the service prefix put in every SMS.
ENV_PREFIX = "SMN_ALERT_PREFIX"

# Defaults of settings another module uses are that module's (imported above: DEFAULT_MAX_LENGTH is the
# composer's, DEFAULT_MAX_AGE the retry policy's, DEFAULT_WINDOW the pager's, DEFAULT_CAPACITY and
# DEFAULT_SHUTDOWN_TIMEOUT the dispatcher's); those below are used by the settings alone. The engine never
# imports this module: settings point at the engine, not back.
#: Shortest ``max_length`` a user may set: room for level, logger and message. It is above the composer's
#: own floor (``_compose.MIN_PAGE_LENGTH``, 20) by the longest signature (18), which shares the length.
MIN_MAX_LENGTH_SETTING = 40
#: Longest service prefix, in characters.
MAX_PREFIX_LENGTH = 40
#: SMS per ``budget_period``: a handful per 10 minutes, well under SMN's 60 per number per hour.
DEFAULT_BUDGET = 5
#: Seconds over which ``budget`` SMS refill.
DEFAULT_BUDGET_PERIOD = 600.0
#: SMS per 12 hours, under SMN's 200 per number (SMN.0057). The bucket starts full and refills over 12
#: hours, so any 12 hours can see twice this many, plus the last page at shutdown: 2 x 99 + 1 = 199.
DEFAULT_BUDGET_12H = (_smn.PER_NUMBER_LONG_LIMIT - 1) // 2
#: Smallest buffer allowed.
MIN_CAPACITY = 10
#: Seconds sending stops after an error no retry can fix (bad credentials, unknown sign).
DEFAULT_CIRCUIT_COOLDOWN = 300.0
#: Shortest ``budget_period``, in seconds: shorter makes the refill rate meaningless.
MIN_BUDGET_PERIOD = 1.0
#: Longest ``shutdown_timeout``, in seconds: no process exit should wait longer for a page.
MAX_SHUTDOWN_TIMEOUT = 300.0
#: Most alerts the buffer may hold (each about a kilobyte).
MAX_CAPACITY = 1_000_000
#: Most SMS ``budget`` and ``budget_12h`` may allow: far beyond what SMN lets one number receive.
MAX_BUDGET = 100_000

#: Settings passed through untouched to ``SMNClient``, which resolves and validates them.
CONNECTION_SETTINGS = tuple(
    "project_id region endpoint_url ak sk security_token auth_token timeout verify session".split()  # noqa: SIM905
)
_SECRETS = frozenset({"sk", "security_token", "auth_token"})


def mask_secret(value: str | None, keep: int = 0) -> str:
    """Mask a credential for diagnostics: say whether it is set, never what it is.

    Args:
        value: The secret, or ``None``.
        keep: Characters to show at the start, for identifiers such as an AK; only shown when the value
            is at least three times as long.
    """
    if value is None:
        return "<unset>"
    if not value:
        return "<empty>"
    shown = value[:keep] if keep and len(value) >= 3 * keep else ""
    return shown + "****"


class _Range(NamedTuple):
    """A numeric setting's default and the values it allows (nan and infinities never)."""

    default: float
    low: float
    high: float
    above: bool = False  # the low end itself is not allowed ("more than 0")
    whole: bool = False  # whole numbers only (a count)
    unit: str = ""

    def allows(self, number: float) -> bool:
        """Tell whether ``number`` (finite) is in range, and whole if it counts things."""
        low_ok = number > self.low if self.above else number >= self.low
        return low_ok and number <= self.high and (number.is_integer() or not self.whole)

    @property
    def rule(self) -> str:
        """The range in words, for the error message."""
        low, high = _figure(self.low), _figure(self.high) + self.unit
        if self.above:
            return f"more than {low} and at most {high}"
        return f"{'a whole number' if self.whole else 'a number'} from {low} to {high}"


def _figure(number: float) -> str:
    return f"{number:,.0f}" if float(number).is_integer() else f"{number:g}"


def _number(name: str, value: object, limits: _Range) -> float:
    """Parse a number or numeric string (never a bool) and check it against ``limits``."""
    number = to_number(value)
    if number is None or not limits.allows(number):
        raise invalid(name, value, f"must be {limits.rule}")
    return number


_SECONDS = " seconds"
_A_DAY = f"{_SECONDS} (a day)"
# Numeric settings: name -> default and allowed range. Every one has an upper bound: a duration of 1e10
# seconds overflows the waits of threads and locks, and a count of 1e10 is a typo.
_NUMBERS: dict[str, _Range] = {
    "max_length": _Range(DEFAULT_MAX_LENGTH, MIN_MAX_LENGTH_SETTING, _smn.MAX_MESSAGE_LENGTH, whole=True),
    "budget": _Range(DEFAULT_BUDGET, 1, MAX_BUDGET, whole=True),
    "budget_period": _Range(DEFAULT_BUDGET_PERIOD, MIN_BUDGET_PERIOD, MAX_DURATION, unit=_A_DAY),
    "budget_12h": _Range(DEFAULT_BUDGET_12H, 1, MAX_BUDGET, whole=True),
    "window": _Range(DEFAULT_WINDOW, 0, MAX_DURATION, above=True, unit=_A_DAY),
    "capacity": _Range(DEFAULT_CAPACITY, MIN_CAPACITY, MAX_CAPACITY, whole=True),
    "shutdown_timeout": _Range(DEFAULT_SHUTDOWN_TIMEOUT, 0, MAX_SHUTDOWN_TIMEOUT, unit=_SECONDS),
    "max_retry_age": _Range(DEFAULT_MAX_AGE, 0, MAX_DURATION, above=True, unit=_A_DAY),
    "circuit_cooldown": _Range(DEFAULT_CIRCUIT_COOLDOWN, 0, MAX_DURATION, above=True, unit=_A_DAY),
}


def _float_setting(given: Mapping[str, object], name: str) -> float:
    """Return a numeric setting from ``given`` (or its default), checked against its range in ``_NUMBERS``."""
    limits = _NUMBERS[name]
    return _number(name, given.get(name, limits.default), limits)


def _int_setting(given: Mapping[str, object], name: str) -> int:
    """As :func:`_float_setting`, for settings that count things (their range allows whole numbers only)."""
    return int(_float_setting(given, name))


def check_level(value: object, name: str = "level") -> int:
    """Return the logging level ``value`` names: a whole number, or a name logging knows, in any case.

    Args:
        value: ``logging.ERROR``, ``40``, ``"ERROR"``, ``"error"``, ``"40"`` or a custom level's name.
        name: The setting's name, for the error.

    Raises:
        SMNConfigError: ``value`` is neither (``3.5``, ``True``, ``"loud"``); the message names it.
    """
    if isinstance(value, str):
        text = value.strip()
        for candidate in (text, text.upper()):
            number = logging.getLevelName(candidate)  # a name's number, if logging knows the name
            if isinstance(number, int):
                return number
        if re.fullmatch(r"-?[0-9]+", text):
            return int(text)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise invalid(name, value, "must be a level name such as 'ERROR' or a whole number such as 40")


def _check_unknown(kwargs: Mapping[str, object]) -> None:
    """Refuse settings nobody reads, naming each and the likely intended one (a typo must not pass)."""
    known = CONNECTION_SETTINGS + PAGER_SETTINGS
    unknown = sorted(name for name in kwargs if name not in known)
    if not unknown:
        return
    hints = [difflib.get_close_matches(name, known, n=1) for name in unknown]
    said = ", ".join(
        repr(name) + (f" (did you mean {hint[0]!r}?)" if hint else "") for name, hint in zip(unknown, hints)
    )
    plural = "s" if len(unknown) > 1 else ""
    raise SMNConfigError(f"unknown setting{plural} {said}")


def _resolve_prefix(given: Mapping[str, object], environ: Mapping[str, str]) -> str:
    name, value = "prefix", given.get("prefix")
    if value is None:
        name, value = ENV_PREFIX, environ.get(ENV_PREFIX, "")
    if not isinstance(value, str):
        raise invalid(name, value, "must be a string")
    if len(value.strip()) > MAX_PREFIX_LENGTH:
        raise invalid(name, value, f"is {len(value.strip())} characters; at most {MAX_PREFIX_LENGTH}")
    return value.strip()


def _resolve_shared_state(given: Mapping[str, object], environ: Mapping[str, str]) -> str | None:
    """Return the ``shared_state`` URL (checked, not connected); None when it and its variable are unset.

    An error shows the URL with its password masked.
    """
    name, value = "shared_state", given.get("shared_state")
    if value is None:
        name, value = ENV_SHARED_STATE, environ.get(ENV_SHARED_STATE)
        if value is None or not value.strip():
            return None
    if not isinstance(value, str):
        raise SMNConfigError(
            f"{name}: must be a string such as 'redis://host:6379/0', not {type(value).__name__}"
        )
    return check_url(value) or None


def _compile_patterns(value: object) -> tuple[re.Pattern[str], ...]:
    """Compile the user's redaction regexes now, so a typo fails at start-up rather than mid-incident.

    Errors name the pattern by its index, never by its text: a pattern may be a literal secret.
    """
    if isinstance(value, (str, re.Pattern)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise SMNConfigError(
            f"redact_patterns: must be a list of regular expressions, not {type(value).__name__}"
        )
    return compile_user_patterns(value)


@dataclasses.dataclass(frozen=True, repr=False)
class PagerSettings:
    """The handler's and processor's validated settings; build it with :meth:`from_kwargs`.

    Attributes:
        connection: Only the connection settings that were given, for ``SMNClient`` to resolve.
        endpoints: On-call numbers (SMS mode), de-duplicated in order; empty in topic mode.
        topic_urn: Topic to publish to (topic mode), else ``None``.
    """

    connection: dict[str, object] = dataclasses.field(hash=False)
    endpoints: tuple[str, ...]
    topic_urn: str | None
    subject: str | None
    sign_id: str | None
    message_include_sign_flag: str | None
    signature: str | None
    extend_code: str | None
    extend_src_id: str | None
    prefix: str
    max_length: int
    budget: int
    budget_period: float
    budget_12h: int
    window: float
    capacity: int
    shutdown_timeout: float
    max_retry_age: float
    circuit_cooldown: float
    redact_patterns: tuple[re.Pattern[str], ...]
    shared_state: str | None = None

    @classmethod
    def from_kwargs(cls, environ: Mapping[str, str] | None = None, **kwargs: object) -> PagerSettings:
        """Resolve and validate settings given as keyword arguments, falling back on the environment.

        A setting given as ``None`` counts as not given. Explicit arguments win over the environment.

        Args:
            environ: Where ``SMN_ALERT_*`` variables are read; ``os.environ`` by default.
            kwargs: The settings, as plain values (strings, numbers, lists).

        Raises:
            SMNConfigError: A setting is invalid or unknown; the message names it (and its value,
                unless the value may be a secret).
        """
        _check_unknown(kwargs)
        env = os.environ if environ is None else environ
        given = {name: value for name, value in kwargs.items() if value is not None}
        fields = resolve_request_fields(given, env)
        return cls(
            connection={name: given[name] for name in CONNECTION_SETTINGS if name in given},
            **fields._asdict(),
            prefix=_resolve_prefix(given, env),
            redact_patterns=_compile_patterns(given.get("redact_patterns", ())),
            shared_state=_resolve_shared_state(given, env),
            max_length=_int_setting(given, "max_length"),
            budget=_int_setting(given, "budget"),
            budget_period=_float_setting(given, "budget_period"),
            budget_12h=_int_setting(given, "budget_12h"),
            window=_float_setting(given, "window"),
            capacity=_int_setting(given, "capacity"),
            shutdown_timeout=_float_setting(given, "shutdown_timeout"),
            max_retry_age=_float_setting(given, "max_retry_age"),
            circuit_cooldown=_float_setting(given, "circuit_cooldown"),
        )

    @property
    def mode(self) -> str:
        """``"sms"`` (SmsBatchPublish to ``endpoints``) or ``"topic"`` (publish to ``topic_urn``)."""
        return "sms" if self.endpoints else "topic"

    def __repr__(self) -> str:
        # Numbers masked, secrets hidden, patterns counted: a redaction pattern may be a literal secret.
        shown: dict[str, object] = {"mode": self.mode, "endpoints": tuple(map(mask_number, self.endpoints))}
        for field in dataclasses.fields(self):
            if field.name not in shown and field.name not in ("connection", "redact_patterns"):
                shown[field.name] = getattr(self, field.name)
        shown["shared_state"] = None if self.shared_state is None else mask_url(self.shared_state)
        shown["connection"] = {name: _masked(name, value) for name, value in self.connection.items()}
        parts = [f"{name}={value!r}" for name, value in shown.items()]
        parts.append(f"redact_patterns=<{len(self.redact_patterns)} compiled>")
        return f"PagerSettings({', '.join(parts)})"


def _masked(name: str, value: object) -> object:
    """Return a connection setting as diagnostics may show it."""
    if name in _SECRETS:
        return mask_secret(str(value))
    if name == "ak":
        return mask_secret(str(value), keep=4)
    if name == "session":
        return f"<{type(value).__name__}>"
    return value


#: The pager's own settings, resolved and validated by :meth:`PagerSettings.from_kwargs`.
PAGER_SETTINGS = tuple(
    field.name for field in dataclasses.fields(PagerSettings) if field.name != "connection"
)
