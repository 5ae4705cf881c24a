"""The small ``Sender`` protocol the dispatcher pages through, and its two SMN implementations.

The dispatcher knows only "send this text, tell me who got it"; how (SmsBatchPublish to numbers, or a
topic publish) lives here, so the dispatcher is tested with a fake sender and no HTTP
(``smn_alert.testing.RecordingSender``). A sender is built from fields ``PagerSettings`` checked, once: each
page then checks only its text, never the numbers, the sign or the topic again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Protocol

from smn_alert import _smn

if TYPE_CHECKING:  # the client imports requests lazily; we only need its type here
    from smn_alert._client import SMNClient


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
    """Pages a list of numbers with SmsBatchPublish.

    The fields must be checked already (as :class:`~smn_alert._settings.PagerSettings` does): numbers
    distinct and valid, the sign, the flag in SMN's string form, the signature as :func:`_smn.check_signature`
    returns it.
    """

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
        options = {
            "sign_id": sign_id,
            "message_include_sign_flag": message_include_sign_flag,
            "extend_code": extend_code,
            "extend_src_id": extend_src_id,
        }
        self._options = {name: value for name, value in options.items() if value is not None}

    def send(self, text: str) -> Delivery:
        """Send ``text`` to every number; numbers SMN refused come back as :class:`Refusal`."""
        message = _smn.check_sms_message(self.signature + text, self._options)
        result = self.client._send_sms(self.endpoints, message, self._options)
        refused = tuple(Refusal(r.endpoint, r.code, r.message) for r in result.refused)
        return Delivery(delivered=tuple(result.delivered), refused=refused)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class TopicSender:
    """Publishes to an SMN topic whose subscribers are phone numbers (URN and subject checked already)."""

    def __init__(self, client: SMNClient, topic_urn: str, *, subject: str | None = None) -> None:
        self.client = client
        self.topic_urn = topic_urn
        self.subject = subject

    def send(self, text: str) -> Delivery:
        """Publish ``text`` to the topic; SMN fans it out to the subscribers."""
        self.client._send_to_topic(self.topic_urn, _smn.check_topic_message(text), self.subject)
        return Delivery(delivered=(self.topic_urn,))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()
