"""The small ``Sender`` protocol the dispatcher pages through, and its two SMN implementations.

The dispatcher knows only "send this text, tell me who got it"; how (SmsBatchPublish to numbers, or a
topic publish) lives here, so the dispatcher is tested with a fake sender and no HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

if TYPE_CHECKING:  # the client imports requests lazily; we only need its type here
    from smn_alert._client import SMNClient

__all__ = ["Delivery", "Refusal", "Sender", "SmsSender", "TopicSender"]


@dataclass(frozen=True)
class Refusal:
    """One number SMN refused inside an otherwise answered request."""

    endpoint: str
    code: Optional[str]
    message: Optional[str]


@dataclass(frozen=True)
class Delivery:
    """What one send achieved: the endpoints (or the topic) that took the message, and the refusals."""

    delivered: tuple[str, ...]
    refused: tuple[Refusal, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when at least one recipient took the message."""
        return bool(self.delivered)


class Sender(Protocol):
    """Sends one SMS text; raises :class:`smn_alert.SMNError` when the request as a whole failed."""

    def send(self, text: str) -> Delivery:
        """Send ``text`` and report who got it."""

    def close(self) -> None:
        """Release connections."""


class SmsSender:
    """Pages a list of numbers with SmsBatchPublish."""

    def __init__(
        self,
        client: SMNClient,
        endpoints: Sequence[str],
        *,
        sign_id: str | None = None,
        message_include_sign_flag: str | None = None,
        signature: str | None = None,
        extend_code: str | None = None,
        extend_src_id: str | None = None,
    ) -> None:
        self.client = client
        self.endpoints = tuple(endpoints)
        self.signature = signature or ""  # with the flag, the caller writes 【sign】 at the head
        self._options = {
            "sign_id": sign_id,
            "message_include_sign_flag": message_include_sign_flag,
            "extend_code": extend_code,
            "extend_src_id": extend_src_id,
        }

    def send(self, text: str) -> Delivery:
        """Send ``text`` to every number; numbers SMN refused come back as :class:`Refusal`."""
        result = self.client.publish_sms(self.endpoints, self.signature + text, **self._options)
        refused = tuple(Refusal(r.endpoint, r.code, r.message) for r in result.refused)
        return Delivery(delivered=tuple(result.delivered), refused=refused)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class TopicSender:
    """Publishes to an SMN topic whose subscribers are phone numbers."""

    def __init__(self, client: SMNClient, topic_urn: str, *, subject: str | None = None) -> None:
        self.client = client
        self.topic_urn = topic_urn
        self.subject = subject

    def send(self, text: str) -> Delivery:
        """Publish ``text`` to the topic; SMN fans it out to the subscribers."""
        self.client.publish_to_topic(self.topic_urn, text, subject=self.subject)
        return Delivery(delivered=(self.topic_urn,))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
