"""smn_alert: page on-call people by SMS through Huawei Cloud SMN when an application logs something serious.

Applications import their logging configuration at start-up, so importing this package costs next to
nothing: the public names below are loaded on first use, and ``requests`` only when the first SMS is sent.
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
    from smn_alert._client import EndpointResult, SMNClient, SmsBatchResult, TopicPublishResult
    from smn_alert._handler import SMNHandler
    from smn_alert._processor import SMNProcessor

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
]

__version__ = "0.1.0"

_LAZY = {
    "SMNClient": "smn_alert._client",
    "EndpointResult": "smn_alert._client",
    "SmsBatchResult": "smn_alert._client",
    "TopicPublishResult": "smn_alert._client",
    "SMNHandler": "smn_alert._handler",
    "SMNProcessor": "smn_alert._processor",
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
