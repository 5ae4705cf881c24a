"""smn_alert: page on-call people by SMS through Huawei Cloud SMN when an application logs something serious."""

from __future__ import annotations

from smn_alert.errors import (
    SMNAuthError,
    SMNConfigError,
    SMNConnectionError,
    SMNError,
    SMNRequestError,
    SMNServerError,
    SMNThrottledError,
)

__all__ = [
    "SMNAuthError",
    "SMNConfigError",
    "SMNConnectionError",
    "SMNError",
    "SMNRequestError",
    "SMNServerError",
    "SMNThrottledError",
]
