"""smn_alert: page on-call people by SMS through Huawei Cloud SMN when an application logs something serious.

The public surface is this module's ``__all__`` and the :mod:`smn_alert.errors` and :mod:`smn_alert.testing`
modules; every other module is private (its name starts with ``_``) and may change in any release.

- :class:`SMNHandler` (a ``logging.Handler``) and :class:`SMNProcessor` (a structlog processor) page;
- :class:`SMNClient` sends one SMS or topic message (results :class:`SmsBatchResult`,
  :class:`EndpointResult`, :class:`TopicPublishResult`);
- :func:`ignore_logger` names a logger that must never page;
- :func:`count_segments`, :func:`sms_encoding` and :func:`billed_segments` say what a text costs;
- the errors, all :class:`SMNError`, say whether a retry can help.

Applications import their logging configuration at start-up, so importing this package costs next to
nothing: the names above are loaded on first use, and ``requests`` only when the first SMS is sent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from smn_alert.errors import (
    SMNAuthError,
    SMNConfigError,
    SMNConnectionError,
    SMNError,
    SMNRequestError,
    SMNServerError,
    SMNThrottledError,
)

if TYPE_CHECKING:
    from smn_alert._client import SMNClient
    from smn_alert._guards import ignore_logger
    from smn_alert._handler import SMNHandler
    from smn_alert._processor import SMNProcessor
    from smn_alert._responses import EndpointResult, SmsBatchResult, TopicPublishResult
    from smn_alert._text import billed_segments, count_segments, sms_encoding

__all__ = [
    "EndpointResult",
    "SMNAuthError",
    "SMNClient",
    "SMNConfigError",
    "SMNConnectionError",
    "SMNError",
    "SMNHandler",
    "SMNProcessor",
    "SMNRequestError",
    "SMNServerError",
    "SMNThrottledError",
    "SmsBatchResult",
    "TopicPublishResult",
    "__version__",
    "billed_segments",
    "count_segments",
    "ignore_logger",
    "sms_encoding",
]

__version__ = "0.1.0"

# Where each public name that is not defined above lives, loaded on first use.
_LAZY = {
    "SMNClient": "smn_alert._client",
    "EndpointResult": "smn_alert._responses",
    "SmsBatchResult": "smn_alert._responses",
    "TopicPublishResult": "smn_alert._responses",
    "SMNHandler": "smn_alert._handler",
    "SMNProcessor": "smn_alert._processor",
    "ignore_logger": "smn_alert._guards",
    "billed_segments": "smn_alert._text",
    "count_segments": "smn_alert._text",
    "sms_encoding": "smn_alert._text",
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use (PEP 562), so ``import smn_alert`` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'smn_alert' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
