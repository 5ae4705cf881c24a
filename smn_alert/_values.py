"""Reading setting values as configs give them (booleans and numbers, also as text), and refusing them.

INI files, the environment and ``dictConfig`` give strings (``"false"``, ``"2.5"``), YAML gives ``yes`` as
``True`` and JSON gives ``5.0`` for 5: every setting reads them the same way through these functions, and a
bad one is refused by :func:`invalid`'s error. A leaf module: it imports only :mod:`smn_alert.errors`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

from smn_alert.errors import SMNConfigError

#: Longest duration setting (a window, a budget period, a retry age, a cooldown), in seconds: a longer one
#: is a typo, and would overflow the waits of threads and locks.
MAX_DURATION = 86_400.0

_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
# The longest a bad value is shown in an error message: a huge value must not flood a log.
_SHOWN = 40


def shown(value: object) -> str:
    """Return the repr of a bad value for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def invalid(name: str, value: object, why: str) -> SMNConfigError:
    """Return the error refusing setting or field ``name``: ``name=<value, cut short>: why``."""
    return SMNConfigError(f"{name}={shown(value)}: {why}")


def from_environ(environ: Mapping[str, str], name: str) -> str | None:
    """Return an environment variable's stripped value; unset and blank both count as not given."""
    return environ.get(name, "").strip() or None


def to_bool(value: object) -> bool | None:
    """Read ``True``/``False``, 1/0 or ``"true"``/``"false"``/``"1"``/``"0"``/``"yes"``/``"no"`` (any case).

    Returns:
        The boolean, or ``None`` when ``value`` is none of those (the caller names the setting in its error).
    """
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, str)):
        return None
    return _WORDS.get(str(value).strip().lower())


def to_number(value: object) -> float | None:
    """Read a finite number from an int, a float or a numeric string (never a bool); else ``None``."""
    if not isinstance(value, (int, float, str)) or isinstance(value, bool):
        return None
    number = math.nan
    with contextlib.suppress(ValueError, OverflowError):
        number = float(value)
    return number if math.isfinite(number) else None
