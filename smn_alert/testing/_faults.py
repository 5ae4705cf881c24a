"""``FakeSMNServer``'s faults on command: failures, malformed or huge answers, a delay, a drip, refusals."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace

from smn_alert.testing._wire import Answer, Rejection

#: How a streamed answer's body is delimited: ``Content-Length``, ``Transfer-Encoding: chunked``, or neither
#: (the body ends when the server closes the connection).
FRAMINGS = ("length", "chunked", "close")
# Bytes written at once when an answer is not dripped.
_PIECE = 64 * 1024
# A drip writes about this many pieces a second (one byte a second is one piece a second).
_DRIP_STEPS_PER_SECOND = 10
_FILLER = b"<p>This is not SMN: a proxy or captive portal answers with a page this large.</p>\n"


@dataclass(frozen=True)
class Streamed(Answer):
    """An answer written in pieces, at a pace, framed as told: its body, or ``size`` bytes of filler.

    The HTTP side writes it piece by piece, so a 200 MB answer never sits in memory, and counts what it
    wrote before the client hung up.
    """

    size: int | None = None  # None: the body as is; else this many bytes of filler made of the body
    bytes_per_second: float | None = None  # None: as fast as the client reads
    framing: str = "length"

    @property
    def length(self) -> int:
        """The body's length in bytes."""
        return len(self.body) if self.size is None else self.size

    def pieces(self) -> Iterator[bytes]:
        """Yield the body in the pieces to write, one per pause when dripped."""
        step = _PIECE
        if self.bytes_per_second is not None:
            step = max(1, int(self.bytes_per_second / _DRIP_STEPS_PER_SECOND))
        if self.size is None:
            yield from (self.body[start : start + step] for start in range(0, len(self.body), step))
            return
        pattern = self.body or b" "
        block = pattern * (step // len(pattern) + 1)  # filler: each piece is the start of the repeated body
        for start in range(0, self.size, step):
            yield block[: min(step, self.size - start)]

    def pause(self, piece: bytes) -> float:
        """Seconds to wait before writing ``piece``: none unless dripped."""
        return 0.0 if self.bytes_per_second is None else len(piece) / self.bytes_per_second


@dataclass
class _Fault:
    kind: str  # "fail", "malformed", "huge" or "close"
    remaining: int
    status: int = 200
    code: str = ""
    message: str = ""
    shape: str = "smn"
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = ""
    size: int = 0
    framing: str = "length"

    def answer(self, request_id: str) -> Answer:
        """Build the answer this fault gives in place of the real one."""
        if self.kind == "close":
            return Answer(None)
        if self.kind == "malformed":
            return Answer(self.status, self.body, self.content_type)
        if self.kind == "huge":
            return Streamed(self.status, _FILLER, self.content_type, size=self.size, framing=self.framing)
        headers = (("Retry-After", self.retry_after),) if self.retry_after is not None else ()
        rejection = Rejection(self.status, self.code, self.message, gateway=self.shape == "gateway")
        return replace(rejection.answer(request_id), headers=headers)


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
        self._drip: tuple[float, int | None] | None = None
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

    def huge(self, n: int, size: int, framing: str, status: int, content_type: str) -> None:
        """Queue ``n`` answers of ``size`` bytes of filler, framed by ``framing`` (see :data:`FRAMINGS`)."""
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if size < 0:
            raise ValueError(f"size must be >= 0, not {size}")
        self._queue(_Fault("huge", n, status, content_type=content_type, size=size, framing=framing))

    def drip(self, bytes_per_second: float, n: int | None) -> None:
        """Write the next ``n`` answers (all when ``None``) at ``bytes_per_second``, replacing a drip set."""
        if not (math.isfinite(bytes_per_second) and bytes_per_second > 0) or (n is not None and n < 1):
            raise ValueError("bytes_per_second must be a number > 0 and n, when given, >= 1")
        with self._lock:
            self._drip = (float(bytes_per_second), n)

    def paced(self, answer: Answer) -> Answer:
        """Return ``answer`` dripped if a drip stands (an unanswered close is left alone and not counted)."""
        if answer.status is None:
            return answer
        with self._lock:
            if self._drip is None:
                return answer
            rate, remaining = self._drip
            if remaining is not None:
                self._drip = (rate, remaining - 1) if remaining > 1 else None
        if isinstance(answer, Streamed):
            return replace(answer, bytes_per_second=rate)
        return Streamed(**vars(answer), bytes_per_second=rate)

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
        """Drop queued faults, the delay, the drip and refused numbers."""
        with self._lock:
            self._faults.clear()
            self._delay = None
            self._drip = None
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
