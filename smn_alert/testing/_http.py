"""``FakeSMNServer``'s HTTP plumbing: a 127.0.0.1 server that ``stop()`` can cut, and its request handler."""

from __future__ import annotations

import contextlib
import selectors
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Callable

from smn_alert.testing._faults import Streamed
from smn_alert.testing._wire import CODE_INVALID, Answer, Rejection, Request, new_id

# Bytes the OS may buffer for a streamed answer (Linux doubles it): a huge answer's count stays honest.
_STREAMED_SEND_BUFFER = 64 * 1024
#: ``written(request_id, body_bytes)``: told how much of an answer's body went out (see ``Server``).
Written = Callable[[str, int], None]


class Runner:
    """Runs a :class:`Server` on a daemon thread: start, and stop with every connection cut and joined."""

    def __init__(
        self,
        serve: Callable[[Request], Answer],
        wall_clock: Callable[[], float],
        max_body_bytes: int,
        written: Written | None = None,
    ) -> None:
        #: Set while stopping; a delayed request or dripped answer waits on it, so ``stop()`` cuts them short.
        self.stopping = threading.Event()
        self._server_args = (serve, wall_clock, max_body_bytes, self.stopping, written)
        #: The port of the latest start, ``None`` before the first.
        self.port: int | None = None
        self._lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether it was started and not stopped since."""
        return self._server is not None

    @property
    def accepted(self) -> int:
        """Connections accepted since the latest start (0 before the first and after a stop)."""
        server = self._server
        return server.accepted if server is not None else 0

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve on a daemon thread.

        Raises:
            RuntimeError: If it is already running.
        """
        with self._lock:
            if self._server is not None:
                raise RuntimeError("FakeSMNServer is already running")
            self.stopping.clear()
            server = Server(*self._server_args)
            self._server, self.port = server, server.server_port
            self._thread = threading.Thread(
                target=server.serve_until, args=(self.stopping,), name="FakeSMNServer", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop serving, cut open connections and join the threads within ``timeout`` seconds."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        self.stopping.set()  # wakes delayed requests at once
        server.wake()
        thread.join(max(0.0, deadline - time.monotonic()))
        server.close_connections(deadline)
        server.server_close()


class Server(ThreadingHTTPServer):
    """The HTTP server; it tracks its connections so that ``stop()`` can cut them and join their threads."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # many senders at once must not overflow the listen backlog

    def __init__(
        self,
        serve: Callable[[Request], Answer],
        wall_clock: Callable[[], float],
        max_body_bytes: int,
        stopping: threading.Event | None = None,
        written: Written | None = None,
    ) -> None:
        """Bind a free port on 127.0.0.1; each request read is answered by ``serve``.

        Args:
            serve: Gives the answer to a request (``status`` ``None``: close the connection unanswered).
            wall_clock: ``time.time``-like clock for ``Request.received_at``.
            max_body_bytes: Largest body read; a bigger one is refused with 400 and the connection closed.
            stopping: Set when the server stops; a dripped answer waits on it between pieces.
            written: Told, after an answer, the bytes of its body written: all of it, or for a streamed
                answer cut short, what went out before the client hung up (counting what the operating
                system buffered).
        """
        self.serve, self.wall_clock, self.max_body_bytes = serve, wall_clock, max_body_bytes
        self.stopping = stopping if stopping is not None else threading.Event()
        self.written = written
        self._connections: dict[socket.socket, threading.Thread] = {}
        #: Connections accepted so far.
        self.accepted = 0
        self._connections_lock = threading.Lock()
        self._waker, self._wakee = socket.socketpair()
        super().__init__(("127.0.0.1", 0), _Handler)

    def serve_until(self, stopping: threading.Event) -> None:
        """Accept connections until ``stopping`` is set and :meth:`wake` is called.

        Unlike ``serve_forever`` it does not poll, so ``stop()`` returns at once, not after a poll interval.
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wakee, selectors.EVENT_READ)
            while not stopping.is_set():
                ready = selector.select()
                if not stopping.is_set() and any(key.fileobj is self for key, _ in ready):
                    self._accept()

    def _accept(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up before it was accepted
        try:
            self.process_request(request, client_address)
        except Exception:  # no thread could serve it: close it rather than leak the socket
            self.shutdown_request(request)

    def wake(self) -> None:
        """Wake :meth:`serve_until` so it sees that it must stop."""
        with contextlib.suppress(OSError):
            self._waker.send(b"x")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._waker.close()
        self._wakee.close()

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s host-name lookup (a DNS query 127.0.0.1 does not need)."""
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a daemon thread registered before it starts (so stop() sees it)."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="FakeSMNServer-conn",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
            self.accepted += 1
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore connection errors: a client hanging up, or stop() cutting a connection, is routine here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self, deadline: float) -> None:
        """Shut down every open connection and join its thread, until ``deadline`` (monotonic)."""
        with self._connections_lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # its handler may have closed it meanwhile
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Reads each request on a keep-alive connection and writes the fake's answer."""

    protocol_version = "HTTP/1.1"
    timeout = 60.0  # an idle keep-alive connection does not hold a thread for ever
    server: Server

    def setup(self) -> None:
        """Turn off Nagle's algorithm: headers and body go out in two writes, and must not wait 40 ms."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        """Serve any method the same way; the router answers 404 to what SMN does not offer."""
        self._dispatch()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: a test's output is no place for an access log."""

    def _dispatch(self) -> None:
        request_id = new_id()
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._write(
                Rejection(400, CODE_INVALID, f"Cannot read the body: {exc}").answer(request_id), request_id
            )
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        req = Request(self.command, self.path, headers, body, request_id, self.server.wall_clock())
        answer = self.server.serve(req)
        if answer.status is None:
            self.close_connection = True
            return
        self._write(answer, request_id)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 <= length <= self.server.max_body_bytes:
            raise ValueError(f"Content-Length {length} is out of range")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline(100).split(b";")[0], 16)
            if size == 0:
                break
            if size + sum(map(len, chunks)) > self.server.max_body_bytes:
                raise ValueError("the chunked body is too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(100)
        while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def _write(self, answer: Answer, request_id: str) -> None:
        if isinstance(answer, Streamed):
            sent = self._write_streamed(answer, request_id)
        else:
            self._write_head(answer, request_id, {"Content-Length": str(len(answer.body))})
            self.wfile.write(answer.body)
            sent = len(answer.body)
        if self.server.written is not None:
            self.server.written(request_id, sent)

    def _write_head(self, answer: Answer, request_id: str, framing: dict[str, str]) -> None:
        self.send_response(answer.status or 500)
        self.send_header("Content-Type", answer.content_type)
        for name, value in framing.items():
            self.send_header(name, value)
        self.send_header("X-Request-Id", request_id)
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()

    def _write_streamed(self, answer: Streamed, request_id: str) -> int:
        """Write ``answer`` piece by piece, pausing as it says; return the body bytes written.

        A client hanging up, or ``stop()``, ends it early and closes the connection. The send buffer is kept
        small, so that what was written when the client hung up is close to what it read.
        """
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _STREAMED_SEND_BUFFER)
        chunked = answer.framing == "chunked"
        framing = {"length": {"Content-Length": str(answer.length)}, "close": {"Connection": "close"}}
        self._write_head(answer, request_id, framing.get(answer.framing, {"Transfer-Encoding": "chunked"}))
        self.close_connection = self.close_connection or answer.framing == "close"
        sent = 0
        try:
            for piece in answer.pieces():
                if self.server.stopping.wait(answer.pause(piece)):
                    self.close_connection = True
                    return sent
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client hung up: that is what these answers are for
            self.close_connection = True
        return sent
