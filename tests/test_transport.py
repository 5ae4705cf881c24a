"""Tests for smn_alert._transport: the session per process, the deadline-bounded read, the answer cap, and
what the environment may not change (a ~/.netrc login, a session's auth; proxies do apply)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import requests
import responses

from smn_alert._client import SMNClient
from smn_alert._responses import MAX_ANSWER_BYTES, SmsBatchResult
from smn_alert.errors import SMNAuthError, SMNConnectionError, SMNServerError
from smn_alert.testing import FakeSMNServer

from .test_client import HOST, SIGN_ID, SMS_URL, make_client, ok_answer, sent_headers


@pytest.fixture
def client() -> Iterator[SMNClient]:
    with make_client() as made:
        yield made


class TestSession:
    def test_session_is_made_lazily_and_closed(
        self, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No session exists before the first request; close() closes the one the client made."""
        made_sessions: list[Tracking] = []

        class Tracking(requests.Session):
            closed = False

            def __init__(self) -> None:
                super().__init__()
                made_sessions.append(self)

            def close(self) -> None:
                self.closed = True
                super().close()

        monkeypatch.setattr(requests, "Session", Tracking)
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        made = make_client()
        assert made_sessions == []
        made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        made.close()
        made.close()
        assert len(made_sessions) == 1
        assert made_sessions[0].closed

    def test_session_passed_in_is_used_and_left_open(self, rsps: responses.RequestsMock) -> None:
        """A caller's session carries the requests and is not closed by the client."""
        used: list[str] = []

        class Mine(requests.Session):
            def request(self, *args: Any, **kwargs: Any) -> requests.Response:
                used.append("request")
                return super().request(*args, **kwargs)

            def close(self) -> None:
                used.append("close")
                super().close()

        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        with Mine() as session:
            with make_client(session=session) as made:
                made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
            assert used == ["request"]

    def test_forked_child_makes_a_new_session(
        self, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a fork (new pid) the parent's pooled session is dropped and a fresh one is used."""
        made_sessions: list[requests.Session] = []
        real_session = requests.Session

        def tracking() -> requests.Session:
            made_sessions.append(real_session())
            return made_sessions[-1]

        monkeypatch.setattr(requests, "Session", tracking)
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        with make_client() as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
            assert len(made_sessions) == 1
            monkeypatch.setattr("smn_alert._transport.os.getpid", lambda: -1)
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert len(made_sessions) == 2

    def test_close_in_forked_child_leaves_the_parents_session_alone(
        self, rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """close() in a forked child drops the parent's session unclosed (closing can hang on its locks)."""
        closed: list[requests.Session] = []

        class Tracking(requests.Session):
            def close(self) -> None:
                closed.append(self)
                super().close()

        monkeypatch.setattr(requests, "Session", Tracking)
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        made = make_client()
        made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        parent_pid = os.getpid()
        monkeypatch.setattr("smn_alert._transport.os.getpid", lambda: parent_pid + 1)
        made.close()
        made.close()
        assert closed == []
        monkeypatch.setattr("smn_alert._transport.os.getpid", lambda: parent_pid)
        made.close()
        assert closed == []  # the reference was dropped, so not even the parent closes it through this client


# --- answers that come too slowly or are too large, against a real server ---------------------------------
@pytest.fixture
def smn() -> Iterator[FakeSMNServer]:
    with FakeSMNServer() as fake:
        yield fake


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for something the server's connection thread does (a deadline, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


def answered_bytes(smn: FakeSMNServer, index: int = 0) -> int:
    """How much of the answer to request ``index`` the server wrote before it ended or the client hung up."""
    wait_until(lambda: len(smn.requests) > index and smn.requests[index].answered_bytes is not None, "answer")
    written = smn.requests[index].answered_bytes
    assert written is not None
    return written


def page(made: SMNClient) -> SmsBatchResult:
    return made.publish_sms(["+8613800000000"], "disk full", sign_id=SIGN_ID)


class TestDeadline:
    def test_the_deadline_is_connect_plus_read(self) -> None:
        """One number t counts as (t, t); the default allows 3.05 + 10 s for the whole attempt."""
        assert make_client(timeout=0.5)._settings.deadline == 1.0
        assert make_client(timeout=(1, 2.5))._settings.deadline == 3.5
        assert make_client()._settings.deadline == pytest.approx(13.05)

    @pytest.mark.parametrize("bytes_per_second", [10, 200])
    def test_a_dripped_answer_is_abandoned_at_the_deadline(
        self, bytes_per_second: float, smn: FakeSMNServer
    ) -> None:
        """A dripped answer (each piece well within the 0.25 s read timeout) is given up at connect + read.

        Before, requests' per-read timeout never tripped and the call took as long as the server liked.
        """
        made = SMNClient(**smn.settings(), timeout=0.25)
        page(made)  # the session and its pooled connection are ready: the attempt below is all waiting
        smn.drip(bytes_per_second, n=1)
        started = time.monotonic()
        with made, pytest.raises(SMNConnectionError, match=r"no answer in time .*over 0\.5 s") as info:
            page(made)
        took = time.monotonic() - started
        assert 0.45 < took < 0.5 + 0.25, took  # by the deadline, at worst one read timeout later
        assert info.value.retryable
        assert answered_bytes(smn, 1) < 0.5 * bytes_per_second + 10  # the client hung up on it

    def test_without_read1_a_dripped_answer_is_still_abandoned(
        self, smn: FakeSMNServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With urllib3 before 2.2 (no ``read1``), http.client's single-recv read is used: bounded too."""
        import urllib3.response

        for kind in (urllib3.response.HTTPResponse, urllib3.response.BaseHTTPResponse):
            monkeypatch.delattr(kind, "read1", raising=False)
        made = SMNClient(**smn.settings(), timeout=0.25)
        assert page(made).ok
        smn.drip(10, n=1)
        started = time.monotonic()
        with made, pytest.raises(SMNConnectionError, match="no answer in time"):
            page(made)
        assert time.monotonic() - started < 0.5 + 0.25

    def test_a_slow_but_steady_answer_within_the_deadline_is_read(self, smn: FakeSMNServer) -> None:
        """The deadline is for the whole answer; one that arrives in time, however slowly, is taken."""
        with SMNClient(**smn.settings(), timeout=1.5) as made:
            smn.drip(1000, n=1)  # ~200 bytes: about 0.2 s
            assert page(made).ok
            assert page(made).ok
        assert len(smn.messages) == 2

    def test_answers_read_whole_keep_the_connection_alive(self, smn: FakeSMNServer) -> None:
        """Streaming the answer does not cost a new connection (a TLS handshake to SMN) per page.

        An answer read to its end leaves the connection in the pool, its timeout as it was; one cut short
        (too large, too slow) is closed, and the next page connects afresh.
        """
        with SMNClient(**smn.settings()) as made:
            for _ in range(3):
                assert page(made).ok
            assert smn.connections == 1
            smn.huge_next(1, mebibytes=2, framing="chunked")
            with pytest.raises(SMNServerError):
                page(made)
            assert page(made).ok
        assert smn.connections == 2

    def test_a_server_that_never_answers_still_times_out_per_read(self, smn: FakeSMNServer) -> None:
        """Silence before the headers is requests' read timeout, as before."""
        smn.delay(2.0, n=1)
        with (
            SMNClient(**smn.settings(), timeout=0.2) as made,
            pytest.raises(SMNConnectionError, match="no answer in time"),
        ):
            page(made)


class TestAnswerSize:
    def test_max_answer_bytes_leaves_room_for_the_largest_real_answer(self, smn: FakeSMNServer) -> None:
        """A batch of 1,000 numbers, all refused with a long message, is SMN's largest answer: well under."""
        numbers = [f"+86138{i:08d}" for i in range(1000)]
        for number in numbers:
            smn.refuse(number, "SMN.0160", "The number is in the blacklist of the SMS gateway, please check.")
        with SMNClient(**smn.settings()) as made:
            result = made.publish_sms(numbers, "x", sign_id=SIGN_ID)
        assert len(result.refused) == 1000
        assert 50_000 < answered_bytes(smn) < MAX_ANSWER_BYTES / 5

    @pytest.mark.parametrize("framing", ["length", "chunked", "close"])
    def test_a_200_mb_answer_is_malformed_and_read_no_further(
        self, framing: Literal["length", "chunked", "close"], smn: FakeSMNServer
    ) -> None:
        """200 MiB (a portal page; declared, chunked or until close): at most the 1 MiB cap is read.

        Before, the whole body was read into memory (and again on the retry).
        """
        smn.huge_next(1, mebibytes=200, framing=framing)
        tracemalloc.start()
        try:
            with SMNClient(**smn.settings()) as made, pytest.raises(SMNServerError) as info:
                page(made)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "malformed answer from SMN: over 1 MiB" in str(info.value)
        assert info.value.retryable and info.value.status == 200
        assert peak < 4 * MAX_ANSWER_BYTES, peak
        # What the server wrote before the client hung up: the cap, plus what the sockets buffered.
        assert answered_bytes(smn) < 3 * MAX_ANSWER_BYTES

    def test_a_content_length_over_the_cap_is_not_read_at_all(self, smn: FakeSMNServer) -> None:
        """A declared 2 MiB body dripping at 1 KB/s is refused at once, not read until the deadline."""
        smn.huge_next(1, mebibytes=2)
        smn.drip(1000, n=1)
        started = time.monotonic()
        with (
            SMNClient(**smn.settings(), timeout=5) as made,
            pytest.raises(SMNServerError, match="over 1 MiB"),
        ):
            page(made)
        assert time.monotonic() - started < 2.0
        assert answered_bytes(smn) < 2000

    def test_an_oversized_error_page_is_malformed_whatever_its_status(self, smn: FakeSMNServer) -> None:
        """A 403 portal page of 2 MiB is not SMN refusing the key: retryable, not an auth error."""
        smn.huge_next(1, mebibytes=2, status=403, framing="chunked")
        with SMNClient(**smn.settings()) as made, pytest.raises(SMNServerError, match="over 1 MiB") as info:
            page(made)
        assert not isinstance(info.value, SMNAuthError) and info.value.status == 403

    def test_an_answer_of_exactly_the_cap_is_read(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """The cap is inclusive: MAX_ANSWER_BYTES bytes are read (and here parsed as SMN's JSON)."""
        answer = json.dumps(ok_answer(["13800000000"])).encode()
        padded = answer[:-1] + b" " * (MAX_ANSWER_BYTES - len(answer)) + b"}"
        rsps.add(responses.POST, SMS_URL, body=padded)
        assert client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID).ok

    def test_identity_is_asked_and_a_gzip_answer_is_still_read(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """The client asks for no compression; a gateway gzipping anyway is understood."""
        body = gzip.compress(json.dumps(ok_answer(["13800000000"])).encode())
        rsps.add(responses.POST, SMS_URL, body=body, headers={"Content-Encoding": "gzip"})
        assert client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID).ok
        assert sent_headers(rsps.calls[0])["Accept-Encoding"] == "identity"

    def test_a_gzip_bomb_is_decompressed_no_further_than_the_cap(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """16 KB of gzip that would inflate to 16 MiB is malformed, after at most 1 MiB of output."""
        bomb = gzip.compress(b" " * (16 << 20), compresslevel=9)
        assert len(bomb) < MAX_ANSWER_BYTES
        rsps.add(responses.POST, SMS_URL, body=bomb, headers={"Content-Encoding": "gzip"})
        tracemalloc.start()
        try:
            with pytest.raises(SMNServerError, match="over 1 MiB"):
                client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * MAX_ANSWER_BYTES, peak


# --- the environment: ~/.netrc, a session's auth, proxies -----------------------------------------------
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
NETRC_PASSWORD = "netrc-password-must-never-be-sent"


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    seen: list[str]


class _ForwardProxy(BaseHTTPRequestHandler):
    """A tiny HTTP proxy: forwards absolute-form requests as they are; records CONNECT and refuses it."""

    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def do_POST(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hop_by_hop = {"proxy-connection", "connection", "keep-alive"}
        headers = {name: value for name, value in self.headers.items() if name.lower() not in hop_by_hop}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=5)
        try:
            upstream.request(self.command, target.path, body, headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in {"connection", "content-length", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_CONNECT(self) -> None:
        self.server.seen.append(f"CONNECT {self.path}")
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy(no_proxies: None) -> Iterator[_ProxyServer]:
    """A forwarding proxy on 127.0.0.1; ``proxy.seen`` lists the request lines it got."""
    server = _ProxyServer(("127.0.0.1", 0), _ForwardProxy)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real ~/.netrc (HOME and NETRC point at it) whose default entry matches every host."""
    path = tmp_path / ".netrc"
    path.write_text(f"default login bob password {NETRC_PASSWORD}\n")
    path.chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(path))
    return path


def proxy_url(server: _ProxyServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"


class TestEnvironment:
    def test_netrc_never_replaces_the_signature(self, netrc: Path, smn: FakeSMNServer) -> None:
        """A ~/.netrc ``default`` entry: the request still carries our signature and SMN takes it.

        Before, requests put ``Basic bob:<password>`` over the signature: the password went to SMN, a 401 came
        back and paging paused.
        """
        with SMNClient(**smn.settings()) as made:
            assert page(made).ok
        assert len(smn.messages) == 1
        assert NETRC_PASSWORD.encode() not in smn.requests[0].body

    def test_a_sessions_auth_never_replaces_the_signature(self, smn: FakeSMNServer) -> None:
        """A session passed in with ``auth`` set (for another API) does not sign our requests."""
        with requests.Session() as session:
            session.auth = ("bob", "session-password")
            with SMNClient(**smn.settings(), session=session) as made:
                assert page(made).ok

    def test_token_mode_sends_no_authorization_at_all(self, netrc: Path) -> None:
        """With an IAM token: X-Auth-Token, and no Authorization from netrc or from the session's headers."""
        token = "MIIiam-token-for-the-fake-0123456789"
        with FakeSMNServer(auth_token=token) as smn, requests.Session() as session:
            session.headers["Authorization"] = "Bearer meant-for-another-api"
            settings = {**smn.settings(), "ak": None, "sk": None}
            with SMNClient(**settings, auth_token=token, session=session, environ={}) as made:
                assert page(made).ok
            headers = smn.requests[0].headers
        assert "x-auth-token" in headers
        assert "authorization" not in headers

    def test_http_proxy_from_the_environment_carries_the_request(
        self, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch, smn: FakeSMNServer
    ) -> None:
        """HTTP_PROXY is honoured: the request goes through the proxy, signed as sent, and SMN takes it."""
        monkeypatch.setenv("HTTP_PROXY", proxy_url(proxy))
        with SMNClient(**smn.settings()) as made:
            assert page(made).ok
        assert proxy.seen == [f"POST {smn.url}/v2/{smn.project_id}/notifications/sms"]
        assert len(smn.messages) == 1

    def test_no_proxy_sends_straight_to_smn(
        self, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch, smn: FakeSMNServer
    ) -> None:
        """A host in NO_PROXY bypasses HTTP_PROXY."""
        monkeypatch.setenv("HTTP_PROXY", proxy_url(proxy))
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with SMNClient(**smn.settings()) as made:
            assert page(made).ok
        assert proxy.seen == []

    def test_https_proxy_is_asked_to_tunnel_to_smn(
        self, proxy: _ProxyServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HTTPS_PROXY is honoured for SMN's https endpoint: the proxy is asked for a tunnel (and refuses)."""
        monkeypatch.setenv("HTTPS_PROXY", proxy_url(proxy))
        with make_client(timeout=2) as made, pytest.raises(SMNConnectionError, match="ProxyError"):
            page(made)
        assert proxy.seen == [f"CONNECT {HOST}:443"]
