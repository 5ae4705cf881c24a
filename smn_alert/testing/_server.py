"""``FakeSMNServer``: a real HTTP server on 127.0.0.1 that answers like Huawei Cloud SMN, for tests and demos.

It checks AK/SK signatures (or an ``X-Auth-Token``) like the API gateway (``_auth``), validates bodies by its
own table of SMN's rules (``_rules``, ``_table``), answers per-number results, records what it accepted, and
fails on command (``_faults``). Only the standard library is used, so importing it never imports ``requests``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from typing import Callable, Literal

from smn_alert.testing import _rules as rules
from smn_alert.testing._auth import Authenticator
from smn_alert.testing._faults import FRAMINGS, FaultQueue
from smn_alert.testing._http import Runner
from smn_alert.testing._records import ReceivedMessage, ReceivedRequest, Slot
from smn_alert.testing._wire import Answer, Rejection, Request

#: Project id the fake serves unless told otherwise (32 hex characters, like a real one).
DEFAULT_PROJECT_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
#: Access key the fake accepts unless told otherwise.
DEFAULT_AK = "FAKEAKSMNALERT0000000"
#: Secret key the fake verifies signatures with unless told otherwise (not a secret: a test value).
DEFAULT_SK = "fake-sk-smn-alert-0000000000000000000000"
#: Seconds an ``X-Sdk-Date`` may be off the server's clock (the gateway allows 15 minutes).
DEFAULT_CLOCK_SKEW_LIMIT = 900.0
#: Consecutive bad signatures after which the gateway locks an access key.
DEFAULT_LOCK_AFTER = 5
#: Seconds an access key stays locked.
DEFAULT_LOCK_SECONDS = 300.0
#: Largest request body read; a bigger one is refused with 400 and the connection closed.
DEFAULT_MAX_BODY_BYTES = 1 << 20


class FakeSMNServer:
    """A local HTTP server that behaves like SMN's SMS batch publish and topic publish APIs.

    Start it (``with FakeSMNServer() as smn:`` or ``start()``/``stop()``), give ``smn.settings()`` to the
    client or handler, send, then look at ``messages`` and ``requests``. The error answers it gives:

    ====  =========  ==================================================================================
    401   APIG.0301  gateway body: bad or missing signature or token, date skew, locked access key
    403   SMN.0001   the project id in the path or ``X-Project-Id`` is not the server's
    403   SMN.0009   message missing, empty, over 490 characters, or flag ``"true"`` without ``【sign】``
    400   SMN.0012   ``endpoints`` missing, empty, or not a list of strings
    400   SMN.0159   more than 1000 endpoints
    400   SMN.0080   ``sign_id`` missing (unless the flag is ``"true"``) or malformed
    400   SMN.0004   body not a JSON object, flag not a string, ``extend_code``, ``extend_src_id``,
                     ``subject``, ``[]``/``【】`` in a topic message (the fake's code; SMN has one per field)
    404   SMN.0006   topic URN malformed or of another project ("Topic not found.")
    404   APIG.0101  no such API (SMN body shape)
    500   SMN.0016   the fake itself failed: a bug, please report it
    ====  =========  ==================================================================================

    Faults queued with ``fail_next``, ``malformed_next``, ``huge_next`` and ``close_next`` apply to the next
    requests, whatever they are, in the order they were queued and before authentication. ``delay``,
    ``drip`` and ``refuse`` are standing settings applied alongside. ``reset_faults()`` removes all of them.
    """

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        ak: str = DEFAULT_AK,
        sk: str = DEFAULT_SK,
        auth_token: str | None = None,
        check_signature: bool = True,
        clock_skew_limit: float = DEFAULT_CLOCK_SKEW_LIMIT,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the server; nothing is bound until :meth:`start`.

        Args:
            project_id: The project id in the paths the server answers.
            ak: The access key accepted in signatures.
            sk: The secret key signatures are verified with.
            auth_token: A token accepted in ``X-Auth-Token``; ``None`` refuses every token.
            check_signature: ``False`` accepts requests without any authentication.
            clock_skew_limit: Seconds ``X-Sdk-Date`` may be off ``wall_clock``.
            clock: Monotonic clock for the access-key lock-out.
            wall_clock: ``time.time``-like clock for ``X-Sdk-Date`` checks and ``received_at``.
        """
        self.project_id, self.ak, self._sk = project_id, ak, sk
        auth = Authenticator(
            ak, sk, auth_token=auth_token, skew_limit=clock_skew_limit, lock_after=DEFAULT_LOCK_AFTER,
            lock_seconds=DEFAULT_LOCK_SECONDS, clock=clock, wall_clock=wall_clock,
        )  # fmt: skip
        self._authenticate = auth.check if check_signature else None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[ReceivedMessage] = []
        self._requests: list[Slot] = []
        self._faults = FaultQueue()
        self._http = Runner(self._handle, wall_clock, DEFAULT_MAX_BODY_BYTES, written=self._written)

    # --- life cycle -------------------------------------------------------------------------------------
    def start(self) -> FakeSMNServer:
        """Bind a free port on 127.0.0.1 and serve on a daemon thread.

        Returns:
            ``self``, so ``server = FakeSMNServer().start()`` works.

        Raises:
            RuntimeError: If the server is already running.
        """
        self._http.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop serving, cut open connections and join the threads within ``timeout`` seconds.

        A request being delayed is abandoned: its connection is closed without an answer. Calling
        ``stop()`` again, or on a server never started, does nothing.
        """
        self._http.stop(timeout)

    def __enter__(self) -> FakeSMNServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``; still answers after ``stop()`` (then nothing listens there)."""
        if self._http.port is None:
            raise RuntimeError("FakeSMNServer is not started: call start() or use it in a with block")
        return f"http://127.0.0.1:{self._http.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted since :meth:`start`; a client keeping its connection alive makes one."""
        return self._http.accepted

    def settings(self) -> dict[str, str]:
        """Keyword arguments pointing a client or handler at this server: project_id, endpoint_url, ak, sk."""
        return {"project_id": self.project_id, "endpoint_url": self.url, "ak": self.ak, "sk": self._sk}

    def __repr__(self) -> str:
        where = self.url if self._http.running else "stopped"
        return f"FakeSMNServer({where}, project_id={self.project_id!r}, ak={self.ak!r})"

    # --- records ----------------------------------------------------------------------------------------
    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages accepted so far (answered 200), oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request read so far, oldest first, including refused, faulted and in-flight ones."""
        with self._lock:
            return [slot.record for slot in self._requests]

    def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``n`` messages were accepted; return all accepted messages.

        Raises:
            AssertionError: If fewer arrived within ``timeout`` seconds; the message lists the last requests
                and what they were answered, so a failing test says why (a 401, a 400 ...).
        """
        self._wait(lambda: len(self._messages) >= n, timeout, f"{n} accepted message(s)")
        return self.messages

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``n`` requests were read (answered or not); return them all.

        Raises:
            AssertionError: If fewer arrived within ``timeout`` seconds.
        """
        self._wait(lambda: len(self._requests) >= n, timeout, f"{n} request(s)")
        return self.requests

    def clear(self) -> None:
        """Forget recorded messages and requests (faults stay; see :meth:`reset_faults`)."""
        with self._lock:
            self._messages.clear()
            self._requests.clear()

    def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "; ".join(slot.describe() for slot in self._requests[-10:]) or "none"
                    raise AssertionError(
                        f"FakeSMNServer: expected {what} within {timeout:g} s, got {len(self._messages)} "
                        f"message(s) from {len(self._requests)} request(s); last requests: {seen}"
                    )
                self._changed.wait(remaining)

    # --- faults -----------------------------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        code: str = "SMN.0016",
        message: str = "Service unavailable, please try again later.",
        retry_after: float | str | None = None,
        shape: Literal["smn", "gateway"] = "smn",
    ) -> None:
        """Answer the next ``n`` requests with an error instead of serving them.

        Args:
            n: How many requests fail.
            status: The HTTP status (503, 429, 500 ...).
            code: SMN's ``code`` or the gateway's ``error_code``.
            message: SMN's ``message`` or the gateway's ``error_msg``.
            retry_after: Sent as ``Retry-After``: seconds, or a string such as an HTTP date.
            shape: ``"smn"`` for ``{"request_id", "code", "message"}``, ``"gateway"`` for
                ``{"error_code", "error_msg", "request_id"}``.
        """
        self._faults.fail(n, status, code, message, retry_after, shape)

    def malformed_next(
        self, n: int = 1, *, status: int = 200, body: bytes = b"not json", content_type: str = "text/html"
    ) -> None:
        """Answer the next ``n`` requests with ``body`` as is (a proxy's HTML page, truncated JSON ...)."""
        self._faults.malformed(n, status, body, content_type)

    def close_next(self, n: int = 1) -> None:
        """Read each of the next ``n`` requests, then close the connection without answering."""
        self._faults.close(n)

    def huge_next(
        self,
        n: int = 1,
        *,
        mebibytes: float = 200.0,
        framing: Literal["length", "chunked", "close"] = "length",
        status: int = 200,
        content_type: str = "text/html",
    ) -> None:
        """Answer the next ``n`` requests with ``mebibytes`` MiB of filler (a broken proxy, a captive portal).

        The body is written as fast as the client reads it, never held in memory whole; when the client hangs
        up, ``ReceivedRequest.answered_bytes`` says how much had gone out.

        Args:
            n: How many requests get it.
            mebibytes: The body's size in MiB (2**20 bytes); fractions are fine.
            framing: ``"length"`` sends ``Content-Length``; ``"chunked"`` uses ``Transfer-Encoding: chunked``;
                ``"close"`` sends neither, the body ending when the server closes the connection.
            status: The HTTP status.
            content_type: The ``Content-Type``.
        """
        if framing not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if not (math.isfinite(mebibytes) and mebibytes >= 0):
            raise ValueError(f"mebibytes must be a number >= 0, not {mebibytes!r}")
        self._faults.huge(n, int(mebibytes * (1 << 20)), framing, status, content_type)

    def drip(self, bytes_per_second: float, n: int | None = None) -> None:
        """Write the body of each of the next ``n`` answers (all when ``None``) at ``bytes_per_second``.

        The status line and headers go out at once; the body follows a piece at a time (about ten pieces a
        second, or one byte a second at ``1``), like a server or proxy that drips. It applies to whatever
        answer the request gets, a queued fault's included, and replaces any earlier drip. ``stop()`` cuts a
        drip short and closes that connection.
        """
        self._faults.drip(bytes_per_second, n)

    def delay(self, seconds: float, n: int | None = None) -> None:
        """Wait ``seconds`` before answering each of the next ``n`` requests (all of them when ``None``).

        It replaces any earlier delay. ``stop()`` interrupts a delay and closes that connection unanswered.
        """
        self._faults.delay(seconds, n)

    def refuse(
        self, endpoint: str, code: str = "SMN.0160", message: str = "Refused by FakeSMNServer.refuse()."
    ) -> None:
        """Give ``endpoint`` an error entry (``code``, ``message``) in every batch answer until reset."""
        self._faults.refuse(endpoint, code, message)

    def reset_faults(self) -> None:
        """Drop queued faults, the delay, the drip and refused numbers."""
        self._faults.reset()

    # --- serving (on the connection's thread) -----------------------------------------------------------
    def _handle(self, req: Request) -> Answer:
        """Record ``req``, work out its answer and record the status."""
        slot = Slot(ReceivedRequest.of(req))
        with self._changed:
            self._requests.append(slot)
            self._changed.notify_all()
        answer = self._faults.paced(self._answer(req))
        with self._changed:
            slot.record, slot.code = replace(slot.record, status=answer.status), answer.code
            self._changed.notify_all()
        return answer

    def _written(self, request_id: str, body_bytes: int) -> None:
        """Record how much of the answer to ``request_id`` went out (on the connection's thread)."""
        with self._changed:
            for slot in reversed(self._requests):
                if slot.record.request_id == request_id:
                    slot.record = replace(slot.record, answered_bytes=body_bytes)
                    self._changed.notify_all()
                    return

    def _answer(self, req: Request) -> Answer:
        faulted = self._faults.intercept(req.request_id, self._http.stopping)
        if faulted is not None:
            return faulted
        try:
            answer, accepted = rules.serve(req, self.project_id, self._authenticate, self._faults.refused)
            self._record(ReceivedMessage(received_at=req.received_at, request_id=req.request_id, **accepted))
            return answer
        except Rejection as rejection:
            return rejection.answer(req.request_id)
        except Exception:  # a test server answers like a server; it must not kill the connection thread
            return Rejection(500, "SMN.0016", "FakeSMNServer failed on this request (a bug).").answer(
                req.request_id
            )

    def _record(self, message: ReceivedMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
