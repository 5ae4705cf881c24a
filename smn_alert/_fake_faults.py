"""``FakeSMNServer``'s faults on command: queued failures, malformed answers, a delay, refused numbers."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace

from smn_alert._fake_wire import Answer, Refusal

__all__ = ["FaultQueue"]


@dataclass
class _Fault:
    kind: str  # "fail", "malformed" or "close"
    remaining: int
    status: int = 200
    code: str = ""
    message: str = ""
    shape: str = "smn"
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = ""

    def answer(self, request_id: str) -> Answer:
        """Build the answer this fault gives in place of the real one."""
        if self.kind == "close":
            return Answer(None)
        if self.kind == "malformed":
            return Answer(self.status, self.body, self.content_type)
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        refusal = Refusal(self.status, self.code, self.message, gateway=self.shape == "gateway")
        return replace(refusal.answer(request_id), headers=headers)


def _retry_after_text(value: float | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(int(value)) if float(value).is_integer() else str(value)


class FaultQueue:
    """The faults set on a ``FakeSMNServer``; thread-safe, as connections take them on their own threads.

    Queued faults apply to the next requests in the order queued; the delay and refused numbers stand
    until replaced or reset. ``FakeSMNServer``'s methods of the same purpose document the arguments.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._delay: tuple[float, int | None] | None = None
        self._refused: dict[str, tuple[str, str]] = {}

    def fail(
        self, n: int, status: int, code: str, message: str, retry_after: float | str | None, shape: str
    ) -> None:
        """Queue ``n`` error answers in SMN's or the gateway's body ``shape``."""
        if shape not in ("smn", "gateway"):
            raise ValueError(f"shape must be 'smn' or 'gateway', not {shape!r}")
        self._queue(_Fault("fail", n, status, code, message, shape, _retry_after_text(retry_after)))

    def malformed(self, n: int, status: int, body: bytes, content_type: str) -> None:
        """Queue ``n`` answers of ``body`` as is."""
        self._queue(_Fault("malformed", n, status, body=body, content_type=content_type))

    def close(self, n: int) -> None:
        """Queue ``n`` closes without an answer."""
        self._queue(_Fault("close", n))

    def delay(self, seconds: float, n: int | None) -> None:
        """Delay the next ``n`` answers (all when ``None``) by ``seconds``, replacing any earlier delay."""
        if seconds < 0 or (n is not None and n < 1):
            raise ValueError("seconds must be >= 0 and n, when given, >= 1")
        with self._lock:
            self._delay = (seconds, n)

    def refuse(self, endpoint: str, code: str, message: str) -> None:
        """Give ``endpoint`` the error entry ``code``, ``message`` in batch answers until reset."""
        with self._lock:
            self._refused[endpoint] = (code, message)

    def refused(self) -> dict[str, tuple[str, str]]:
        """Return a snapshot of the refused numbers: ``{endpoint: (code, message)}``."""
        with self._lock:
            return dict(self._refused)

    def reset(self) -> None:
        """Drop queued faults, the delay and refused numbers."""
        with self._lock:
            self._faults.clear()
            self._delay = None
            self._refused.clear()

    def intercept(self, request_id: str, stopping: threading.Event) -> Answer | None:
        """Apply the delay, then the next queued fault; return its answer, or ``None`` to serve the request.

        A delay cut short by ``stopping`` closes the connection unanswered.
        """
        delay = self._take_delay()
        if delay and stopping.wait(delay):
            return Answer(None)
        fault = self._take_fault()
        return None if fault is None else fault.answer(request_id)

    def _queue(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"n must be at least 1, not {fault.remaining}")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.popleft()
            return fault

    def _take_delay(self) -> float:
        with self._lock:
            if self._delay is None:
                return 0.0
            seconds, remaining = self._delay
            if remaining is not None:
                self._delay = (seconds, remaining - 1) if remaining > 1 else None
            return seconds
