"""Tests for smn_alert._client: wire format, signing, batching, validation and error mapping."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import requests
import responses

from smn_alert import _client_settings as connection
from smn_alert import _signer as signer
from smn_alert._client import SMNClient
from smn_alert._client_settings import DEFAULT_TIMEOUT
from smn_alert._responses import (
    MAX_ANSWER_BYTES,
    MISSING_CODE,
    EndpointResult,
    SmsBatchResult,
    TopicPublishResult,
)
from smn_alert.errors import (
    SMNAuthError,
    SMNConfigError,
    SMNConnectionError,
    SMNServerError,
    SMNThrottledError,
)
from smn_alert.testing import FakeSMNServer

AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
SECURITY_TOKEN = "STS-SECRET-security-token-0123456789"
AUTH_TOKEN = "MIIauth-SECRET-iam-token-9876543210"
SECRETS = (SK, SECURITY_TOKEN, AUTH_TOKEN)
PROJECT = "77b6a44cba5143ab91d13ab9a8ff44fd"
HOST = "smn.cn-north-4.myhuaweicloud.com"
BASE = f"https://{HOST}"
SMS_URL = f"{BASE}/v2/{PROJECT}/notifications/sms"
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
FIXED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
URN = f"urn:smn:cn-north-4:{PROJECT}:oncall"
TOPIC_URL = f"{BASE}/v2/{PROJECT}/notifications/topics/urn%3Asmn%3Acn-north-4%3A{PROJECT}%3Aoncall/publish"


def make_client(**overrides: Any) -> SMNClient:
    settings: dict[str, Any] = {
        "project_id": PROJECT,
        "region": "cn-north-4",
        "ak": AK,
        "sk": SK,
        "environ": {},
        "now": lambda: FIXED,
    }
    settings.update(overrides)
    return SMNClient(**settings)


def ok_answer(numbers: list[str], request_id: str = "req-1") -> dict[str, Any]:
    return {
        "request_id": request_id,
        "result": [{"endpoint": n, "message_id": f"mid-{i}"} for i, n in enumerate(numbers)],
    }


def echo_ok(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    """Answer like SMN: every number sent is accepted."""
    assert isinstance(request.body, bytes)
    numbers = json.loads(request.body)["endpoints"]
    return 200, {}, json.dumps(ok_answer(numbers, request_id=f"req-{numbers[0]}"))


def sent_headers(call: Any) -> dict[str, str]:
    return dict(call.request.headers)


def send_recording(rsps: responses.RequestsMock, **overrides: Any) -> dict[str, Any]:
    """Send one SMS through a client made with ``overrides``; return the keyword arguments requests got."""
    seen: dict[str, Any] = {}

    class Recording(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            seen.update(kwargs)
            return super().request(*args, **kwargs)

    rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
    with Recording() as session, make_client(session=session, **overrides) as made:
        made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
    return seen


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def client() -> Iterator[SMNClient]:
    with make_client() as made:
        yield made


class TestImport:
    @pytest.mark.subprocess
    def test_import_does_not_load_requests(self) -> None:
        """Importing the client keeps `requests` out of an application that never pages."""
        code = "import smn_alert._client, sys; assert 'requests' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    @pytest.mark.subprocess
    def test_import_does_not_load_email_utils(self) -> None:
        """Importing the client does not pay for email.utils; only a Retry-After date needs it."""
        code = "import smn_alert._client, sys; assert 'email.utils' not in sys.modules"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class TestConfiguration:
    def test_settings_come_from_the_environment(self) -> None:
        """Project, credentials and region are read from HUAWEICLOUD_SDK_* when not given."""
        environ = {
            "HUAWEICLOUD_SDK_AK": AK,
            "HUAWEICLOUD_SDK_SK": SK,
            "HUAWEICLOUD_SDK_PROJECT_ID": PROJECT,
            "HUAWEICLOUD_SDK_REGION": "ap-southeast-1",
        }
        made = SMNClient(environ=environ)
        assert made.endpoint == "https://smn.ap-southeast-1.myhuaweicloud.com"
        assert made.project_id == PROJECT
        assert "QTWA***" in repr(made)

    def test_os_environ_is_the_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an environ argument the process environment is used."""
        monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PROJECT)
        monkeypatch.setenv("HUAWEICLOUD_SDK_AK", AK)
        monkeypatch.setenv("HUAWEICLOUD_SDK_SK", SK)
        monkeypatch.setenv("SMN_ALERT_ENDPOINT_URL", "http://127.0.0.1:9/")
        assert SMNClient().endpoint == "http://127.0.0.1:9"

    def test_arguments_win_over_the_environment(self) -> None:
        """An argument given explicitly is used even when the environment has another value."""
        environ = {"HUAWEICLOUD_SDK_PROJECT_ID": "fromenv", "HUAWEICLOUD_SDK_REGION": "ap-southeast-1"}
        made = make_client(environ=environ, project_id="fromarg", region="cn-north-4")
        assert (made.project_id, made.endpoint) == ("fromarg", BASE)

    def test_empty_environment_values_count_as_unset(self) -> None:
        """An empty HUAWEICLOUD_SDK_PROJECT_ID is reported as missing, not used."""
        with pytest.raises(SMNConfigError, match="project_id"):
            make_client(project_id=None, environ={"HUAWEICLOUD_SDK_PROJECT_ID": ""})

    def test_security_token_from_environment_is_sent(self, rsps: responses.RequestsMock) -> None:
        """Temporary credentials from the environment carry their security token."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        environ = {"HUAWEICLOUD_SDK_SECURITY_TOKEN": SECURITY_TOKEN}
        with make_client(environ=environ) as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert rsps.calls[0].request.headers["X-Security-Token"] == SECURITY_TOKEN

    @pytest.mark.parametrize(
        ("region", "endpoint"),
        [
            ("cn-north-4", "https://smn.cn-north-4.myhuaweicloud.com"),
            ("ap-southeast-1", "https://smn.ap-southeast-1.myhuaweicloud.com"),
            ("cn-north-2", "https://smn.cn-north-2.myhuaweicloud.cn"),
            ("eu-west-101", "https://smn.eu-west-101.myhuaweicloud.eu"),
        ],
    )
    def test_region_gives_the_endpoint(self, region: str, endpoint: str) -> None:
        """Each region maps to its SMN host, including the .cn and .eu exceptions."""
        assert make_client(region=region).endpoint == endpoint

    def test_endpoint_url_overrides_region(self) -> None:
        """endpoint_url wins over region, without its trailing slash."""
        made = make_client(region="cn-north-4", endpoint_url="http://127.0.0.1:8080/")
        assert made.endpoint == "http://127.0.0.1:8080"

    @pytest.mark.parametrize("region", ["CN-NORTH-4", "cn_north_4", "cn-north", "smn.cn-north-4.com", "x"])
    def test_bad_region_is_refused(self, region: str) -> None:
        """A region that does not look like cn-north-4 is refused at construction."""
        with pytest.raises(SMNConfigError, match="region"):
            make_client(region=region)

    @pytest.mark.parametrize(
        "url", ["ftp://smn.example.com", "smn.example.com", "http://", "https://h/x?q=1", "http://h/#f"]
    )
    def test_bad_endpoint_url_is_refused(self, url: str) -> None:
        """endpoint_url must be an http(s) URL with a host."""
        with pytest.raises(SMNConfigError, match="endpoint_url"):
            make_client(endpoint_url=url)

    def test_endpoint_url_with_password_is_refused_without_echo(self) -> None:
        """A URL carrying user:password is refused and the password is not repeated."""
        with pytest.raises(SMNConfigError, match="endpoint_url") as info:
            make_client(endpoint_url="https://user:hunter2pw@smn.example.com")
        assert "hunter2pw" not in str(info.value)

    @pytest.mark.parametrize(
        ("overrides", "named"),
        [
            ({"project_id": None}, "project_id"),
            ({"region": None}, "region or endpoint_url"),
            ({"ak": None, "sk": None}, "credentials"),
            ({"sk": None}, "sk"),
            ({"ak": None}, "ak"),
            ({"timeout": 0}, "timeout"),
            ({"timeout": -1.0}, "timeout"),
            ({"timeout": "abc"}, "timeout"),
            ({"timeout": "0"}, "timeout"),
            ({"timeout": "-1"}, "timeout"),
            ({"timeout": "nan"}, "timeout"),
            ({"timeout": "inf"}, "timeout"),
            ({"timeout": "1_0"}, "timeout"),
            ({"timeout": ["1", "x"]}, "timeout"),
            ({"timeout": True}, "timeout"),
            ({"timeout": (1.0,)}, "timeout"),
            ({"timeout": (1.0, float("nan"))}, "timeout"),
            ({"timeout": 1e10}, "timeout"),
            ({"timeout": (3, 301)}, "timeout"),
            ({"verify": 1}, "verify"),
            ({"verify": ""}, "verify"),
            ({"verify": "maybe"}, "verify"),
            ({"verify": "/nonexistent/smn-alert/ca.pem"}, "verify"),
            ({"project_id": "a/b"}, "project_id"),
        ],
    )
    def test_missing_or_bad_setting_is_named(self, overrides: dict[str, Any], named: str) -> None:
        """A configuration error names the setting at fault and never shows a secret."""
        overrides.setdefault("security_token", SECURITY_TOKEN)
        with pytest.raises(SMNConfigError, match=named) as info:
            make_client(auth_token=None, **overrides)
        assert_no_secret(str(info.value), repr(info.value))

    @pytest.mark.parametrize("name", ["security_token", "auth_token"])
    def test_token_with_line_break_is_refused_without_echo(self, name: str) -> None:
        """A token with a pasted newline is refused before it can inject a header, and is not shown."""
        secret = AUTH_TOKEN + "\r\nX-Evil: 1"
        with pytest.raises(SMNConfigError, match=name) as info:
            make_client(**{name: secret})
        assert AUTH_TOKEN not in str(info.value)

    @pytest.mark.parametrize(
        ("timeout", "expected"),
        [
            (5, 5.0),
            ((1, 2), (1.0, 2.0)),
            ([1, 2], (1.0, 2.0)),
            (None, DEFAULT_TIMEOUT),
            ("5", 5.0),
            (" 2.5 ", 2.5),
            (["1", "2.5"], (1.0, 2.5)),
            (("3", 4), (3.0, 4.0)),
        ],
    )
    def test_timeout_forms(
        self, timeout: Any, expected: Any, rsps: responses.RequestsMock, tmp_path: Path
    ) -> None:
        """Seconds (also strings, as INI/env give them), a (connect, read) pair or list, or the default."""
        bundle = tmp_path / "ca.pem"
        bundle.write_text("")
        seen = send_recording(rsps, timeout=timeout, verify=str(bundle))
        assert (seen["timeout"], seen["verify"], seen["allow_redirects"]) == (expected, str(bundle), False)

    @pytest.mark.parametrize(
        ("verify", "expected"),
        [
            (True, True),
            (False, False),
            ("true", True),
            ("FALSE", False),
            ("1", True),
            ("0", False),
            ("Yes", True),
            (" no ", False),
        ],
    )
    def test_verify_words_become_bools(
        self, verify: Any, expected: bool, rsps: responses.RequestsMock
    ) -> None:
        """verify="false" from an INI/env config turns verification off; it is not taken for a CA path."""
        assert send_recording(rsps, verify=verify)["verify"] is expected

    def test_verify_directory_is_a_ca_path(self, rsps: responses.RequestsMock, tmp_path: Path) -> None:
        """A directory of CA certificates is passed to requests as given."""
        assert send_recording(rsps, verify=str(tmp_path))["verify"] == str(tmp_path)

    def test_environment_values_are_stripped(self, rsps: responses.RequestsMock) -> None:
        """A value pasted into the environment with a trailing newline or spaces works (no 401 lock-out)."""
        environ = {
            "HUAWEICLOUD_SDK_AK": f" {AK}\n",
            "HUAWEICLOUD_SDK_SK": f"{SK}\r\n",
            "HUAWEICLOUD_SDK_PROJECT_ID": f"{PROJECT} ",
            "HUAWEICLOUD_SDK_REGION": "\tcn-north-4\n",
            "HUAWEICLOUD_SDK_SECURITY_TOKEN": f"{SECURITY_TOKEN}\n",
        }
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        with SMNClient(environ=environ, now=lambda: FIXED) as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        request = rsps.calls[0].request
        auth = signer.parse_authorization(request.headers["Authorization"])
        assert auth is not None
        assert auth["Access"] == AK
        assert request.headers["X-Security-Token"] == SECURITY_TOKEN
        assert isinstance(request.body, bytes)
        names = auth["SignedHeaders"].split(";")
        digest, _ = signer.signature(SK, "POST", request.url or "", request.headers, request.body, names)
        assert auth["Signature"] == digest

    def test_endpoint_url_from_environment_is_stripped(self) -> None:
        """SMN_ALERT_ENDPOINT_URL with surrounding whitespace gives the clean base URL."""
        made = make_client(region=None, environ={"SMN_ALERT_ENDPOINT_URL": " http://127.0.0.1:9/smn/ \n"})
        assert made.endpoint == "http://127.0.0.1:9/smn"

    @pytest.mark.parametrize("name", ["ak", "sk"])
    @pytest.mark.parametrize("source", ["argument", "environment"])
    @pytest.mark.parametrize("gap", [" ", "\n", "\t", "\u3000"])
    def test_key_with_whitespace_inside_is_refused_without_echo(
        self, name: str, source: str, gap: str
    ) -> None:
        """An AK or SK with whitespace inside is refused at construction, naming it but not showing it."""
        value = {"ak": AK, "sk": SK}[name]
        broken = value[:10] + gap + value[10:]
        if source == "argument":
            overrides: dict[str, Any] = {name: broken}
        else:
            overrides = {name: None, "environ": {f"HUAWEICLOUD_SDK_{name.upper()}": broken}}
        with pytest.raises(SMNConfigError, match=f"^{name} ") as info:
            make_client(**overrides)
        for shown in (str(info.value), repr(info.value)):
            assert value[:10] not in shown
            assert value[10:] not in shown

    def test_given_sk_with_trailing_newline_is_refused(self) -> None:
        """An SK argument read from a file with its newline is refused before it can cost a failed login."""
        with pytest.raises(SMNConfigError, match=r"^sk ") as info:
            make_client(sk=SK + "\n")
        assert SK not in str(info.value)

    def test_endpoint_url_error_hides_query_and_fragment(self) -> None:
        """A refused endpoint_url is shown as scheme://host/path only; its query may hold a token."""
        url = "ftp://smn.example.com:21/v2?access_token=TOKSECRET123#frag-SECRET"
        with pytest.raises(SMNConfigError, match="endpoint_url") as info:
            make_client(endpoint_url=url)
        assert "ftp://smn.example.com:21/v2" in str(info.value)
        assert "SECRET" not in str(info.value)
        assert "SECRET" not in repr(info.value)

    def test_auth_token_alone_is_enough(self) -> None:
        """An IAM token is a complete credential without AK/SK."""
        made = make_client(ak=None, sk=None, auth_token=AUTH_TOKEN)
        assert "auth='token'" in repr(made)


class TestRepr:
    def test_repr_shows_endpoint_project_and_masked_ak(self) -> None:
        """repr names what a support ticket needs and masks the access key."""
        made = make_client(security_token=SECURITY_TOKEN, auth_token=AUTH_TOKEN)
        text = repr(made)
        assert text == f"SMNClient(endpoint='{BASE}', project_id='{PROJECT}', ak='QTWA***')"
        assert str(made) == text
        assert AK not in text
        assert_no_secret(text)

    def test_token_client_repr_hides_the_token(self) -> None:
        """A token client's repr says it uses a token, not which."""
        made = make_client(ak=None, sk=None, auth_token=AUTH_TOKEN, security_token=SECURITY_TOKEN)
        assert_no_secret(repr(made), str(made))

    def test_connection_settings_repr_hides_credentials(self) -> None:
        """The resolved settings show endpoint and project in a repr, but no key or token."""
        settings = connection.ConnectionSettings.resolve(
            project_id=PROJECT, region="cn-north-4", ak=AK, sk=SK, security_token=SECURITY_TOKEN, environ={}
        )
        text = repr(settings)
        assert BASE in text
        assert PROJECT in text
        assert AK not in text
        assert_no_secret(text)


class TestSmsWireFormat:
    def test_path_method_headers_and_body(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """SmsBatchPublish is a POST of compact UTF-8 JSON with SMN's headers."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["+8613800000000"]))
        client.publish_sms(["+8613800000000"], "磁盘已满 disk full", sign_id=SIGN_ID)
        request = rsps.calls[0].request
        assert (request.method, request.url) == ("POST", SMS_URL)
        expected = (
            '{"endpoints":["+8613800000000"],"message":"磁盘已满 disk full","sign_id":"' + SIGN_ID + '"}'
        )
        assert request.body == expected.encode("utf-8")
        headers = sent_headers(rsps.calls[0])
        assert headers["Content-Type"] == "application/json;charset=UTF-8"
        assert headers["Host"] == HOST
        assert headers["X-Sdk-Date"] == "20240506T070809Z"
        assert headers["X-Project-Id"] == PROJECT
        assert headers["User-Agent"] == f"smn-alert/{metadata.version('smn-alert')}"
        assert "X-Security-Token" not in headers
        assert "X-Auth-Token" not in headers
        assert headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")

    def test_signature_verifies_against_the_request_sent(self, rsps: responses.RequestsMock) -> None:
        """The Authorization header is a valid signature of exactly what went over the wire."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["+8613800000000"]))
        with make_client(now=lambda: datetime.now(timezone.utc)) as made:
            made.publish_sms(["+8613800000000"], "€ alert", sign_id=SIGN_ID)
        request = rsps.calls[0].request
        auth = signer.parse_authorization(request.headers["Authorization"])
        assert auth is not None
        assert auth["Access"] == AK
        assert auth["SignedHeaders"] == "content-type;host;x-project-id;x-sdk-date"
        names = auth["SignedHeaders"].split(";")
        assert isinstance(request.body, bytes)
        digest, _ = signer.signature(
            SK, request.method or "", request.url or "", request.headers, request.body, names
        )
        assert auth["Signature"] == digest

    def test_signature_is_pinned_for_a_fixed_clock(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """With a fixed clock the signature equals one computed by hand from smn-api.md section 3."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["+8613800000000"]))
        client.publish_sms(["+8613800000000"], "disk full on db-1", sign_id=SIGN_ID)
        body = rsps.calls[0].request.body
        assert isinstance(body, bytes)
        canonical = (
            "POST\n"
            f"/v2/{PROJECT}/notifications/sms/\n"
            "\n"
            "content-type:application/json;charset=UTF-8\n"
            f"host:{HOST}\n"
            f"x-project-id:{PROJECT}\n"
            "x-sdk-date:20240506T070809Z\n"
            "\n"
            "content-type;host;x-project-id;x-sdk-date\n" + hashlib.sha256(body).hexdigest()
        )
        to_sign = "SDK-HMAC-SHA256\n20240506T070809Z\n" + hashlib.sha256(canonical.encode()).hexdigest()
        by_hand = hmac.new(SK.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        pinned = "a15a540ba46bd9c450bece5ea81cc64a596334aefee2dfb3c11a659852a3e838"
        assert by_hand == pinned
        assert rsps.calls[0].request.headers["Authorization"] == (
            f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
            f"Signature={pinned}"
        )

    def test_security_token_is_sent_and_signed(self, rsps: responses.RequestsMock) -> None:
        """Temporary credentials send X-Security-Token and include it in the signature."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        with make_client(security_token=SECURITY_TOKEN) as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        request = rsps.calls[0].request
        assert request.headers["X-Security-Token"] == SECURITY_TOKEN
        auth = signer.parse_authorization(request.headers["Authorization"])
        assert auth is not None
        assert auth["SignedHeaders"] == "content-type;host;x-project-id;x-sdk-date;x-security-token"
        assert isinstance(request.body, bytes)
        names = auth["SignedHeaders"].split(";")
        digest, _ = signer.signature(SK, "POST", request.url or "", request.headers, request.body, names)
        assert auth["Signature"] == digest

    def test_auth_token_mode_sends_token_and_no_signature(self, rsps: responses.RequestsMock) -> None:
        """With only an IAM token the request carries X-Auth-Token and no Authorization."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        with make_client(ak=None, sk=None, auth_token=AUTH_TOKEN) as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        headers = sent_headers(rsps.calls[0])
        assert headers["X-Auth-Token"] == AUTH_TOKEN
        assert "Authorization" not in headers
        assert headers["X-Project-Id"] == PROJECT

    def test_optional_fields_are_sent_only_when_set(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """The flag goes as the string "true"; extend_code and extend_src_id only when given."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        client.publish_sms(
            ["13800000000"],
            "【XX商城】disk full",
            message_include_sign_flag=True,
            extend_code="c1",
            extend_src_id="12",
        )
        body = rsps.calls[0].request.body
        assert isinstance(body, bytes)
        assert json.loads(body) == {
            "endpoints": ["13800000000"],
            "message": "【XX商城】disk full",
            "message_include_sign_flag": "true",
            "extend_code": "c1",
            "extend_src_id": "12",
        }

    def test_host_header_keeps_the_port(self, rsps: responses.RequestsMock) -> None:
        """With an endpoint_url on a port, Host (and so the signature) includes it."""
        url = f"http://127.0.0.1:8080/v2/{PROJECT}/notifications/sms"
        rsps.add(responses.POST, url, json=ok_answer(["13800000000"]))
        with make_client(endpoint_url="http://127.0.0.1:8080/") as made:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert rsps.calls[0].request.headers["Host"] == "127.0.0.1:8080"


class TestTopicPublish:
    def test_urn_is_percent_encoded_and_signed_as_sent(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """The topic URN's colons travel as %3A and the signature covers that path."""
        rsps.add(responses.POST, TOPIC_URL, json={"request_id": "r-9", "message_id": "m-9"})
        result = client.publish_to_topic(URN, "db-1 down", subject="ALERT")
        request = rsps.calls[0].request
        assert request.url == TOPIC_URL
        assert request.body == b'{"message":"db-1 down","subject":"ALERT"}'
        assert result == TopicPublishResult("m-9", "r-9")
        assert isinstance(request.body, bytes)
        canonical, _ = signer.canonical_request("POST", request.url, request.headers, request.body, ["host"])
        assert (
            canonical.split("\n")[1]
            == f"/v2/{PROJECT}/notifications/topics/{URN.replace(':', '%3A')}/publish/"
        )
        auth = signer.parse_authorization(request.headers["Authorization"])
        assert auth is not None
        names = auth["SignedHeaders"].split(";")
        assert (
            auth["Signature"]
            == signer.signature(SK, "POST", request.url, request.headers, request.body, names)[0]
        )

    def test_subject_is_left_out_when_not_given(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """Without a subject the body holds only the message."""
        rsps.add(responses.POST, TOPIC_URL, json={"request_id": "r", "message_id": "m"})
        client.publish_to_topic(URN, "db-1 down")
        assert rsps.calls[0].request.body == b'{"message":"db-1 down"}'

    def test_request_id_falls_back_to_header(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """When the body has no request_id, the X-Request-Id header is used."""
        rsps.add(responses.POST, TOPIC_URL, json={"message_id": "m"}, headers={"X-Request-Id": "hdr-1"})
        assert client.publish_to_topic(URN, "x") == TopicPublishResult("m", "hdr-1")

    @pytest.mark.parametrize("text", ["disk [db-1] full", "a ] b", "【签名】x", "x】"])
    def test_brackets_are_refused_before_sending(self, text: str, rsps: responses.RequestsMock) -> None:
        """A topic SMS with [ ] 【 】 is refused locally, naming the message."""
        with make_client() as made, pytest.raises(SMNConfigError, match="message"):
            made.publish_to_topic(URN, text)
        assert len(rsps.calls) == 0

    def test_bad_urn_is_refused(self, client: SMNClient) -> None:
        """A topic URN that is not urn:smn:... is refused locally."""
        with pytest.raises(SMNConfigError, match="topic_urn"):
            client.publish_to_topic("oncall", "x")

    def test_answer_without_message_id_is_malformed(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """A 200 without message_id is a server error, so it can be retried."""
        rsps.add(responses.POST, TOPIC_URL, json={"request_id": "r"})
        with pytest.raises(SMNServerError, match="malformed"):
            client.publish_to_topic(URN, "x")


class TestSmsResults:
    def test_numbers_are_split_into_requests_of_1000_in_order(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """2,345 numbers go out as 1000, 1000 and 345, in the order given."""
        numbers = [f"+86138{i:08d}" for i in range(2345)]
        rsps.add_callback(responses.POST, SMS_URL, callback=echo_ok)
        result = client.publish_sms(numbers, "x", sign_id=SIGN_ID)
        sent = [json.loads(call.request.body or b"")["endpoints"] for call in rsps.calls]
        assert [len(chunk) for chunk in sent] == [1000, 1000, 345]
        assert [n for chunk in sent for n in chunk] == numbers
        assert result.delivered == tuple(numbers)
        assert result.request_ids == (f"req-{numbers[0]}", f"req-{numbers[1000]}", f"req-{numbers[2000]}")

    def test_duplicates_are_sent_once_keeping_order(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """Exact duplicates are dropped, first occurrence kept; +86 and bare forms stay distinct."""
        rsps.add_callback(responses.POST, SMS_URL, callback=echo_ok)
        given = ["13900000000", "+8613800000000", "13900000000", "13800000000", "+8613800000000"]
        result = client.publish_sms(given, "x", sign_id=SIGN_ID)
        expected = ["13900000000", "+8613800000000", "13800000000"]
        assert json.loads(rsps.calls[0].request.body or b"")["endpoints"] == expected
        assert [r.endpoint for r in result.results] == expected

    def test_seed_answer_with_duplicate_entry(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """The seed's sample answer (SMN.0190 next to an ok entry for one number) counts as delivered."""
        seed_answer = {
            "result": [
                {"endpoint": "18246161627", "code": "SMN.0190", "message": "This endpoint already exists."},
                {"endpoint": "18676696912", "message_id": "0f77847fe8cf47b18fba5def14d5b21e"},
                {"endpoint": "18246161627", "message_id": "0f77847fe8cf47b18fba5def14d5b21e"},
                {"endpoint": "183444455666", "message_id": "0f77847fe8cf47b18fba5def14d5b21e"},
            ],
            "request_id": "29bac33ba85c48418632158a9036231a",
        }
        rsps.add(responses.POST, SMS_URL, json=seed_answer)
        given = ["18676696912", "18246161627", "18246161627", "183444455666"]
        result = client.publish_sms(given, "【XX商城】Sms message test.", message_include_sign_flag="true")
        assert result.ok
        assert result.delivered == ("18676696912", "18246161627", "183444455666")
        assert result.request_ids == ("29bac33ba85c48418632158a9036231a",)

    def test_ok_entry_wins_whatever_the_order(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """A refusal listed after an ok entry for the same number does not undo it."""
        answer = {
            "request_id": "r",
            "result": [
                {"endpoint": "13800000000", "message_id": "m1"},
                {"endpoint": "13800000000", "code": "SMN.0190", "message": "This endpoint already exists."},
            ],
        }
        rsps.add(responses.POST, SMS_URL, json=answer)
        result = client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert result.results == (EndpointResult("13800000000", message_id="m1"),)

    def test_partly_refused_batch(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """One refused number is reported with SMN's code; the others are delivered."""
        answer = {
            "request_id": "r",
            "result": [
                {"endpoint": "13800000000", "message_id": "m1"},
                {"endpoint": "13900000000", "code": "SMN.0160", "message": "invalid endpoint"},
            ],
        }
        rsps.add(responses.POST, SMS_URL, json=answer)
        result = client.publish_sms(["13800000000", "13900000000"], "x", sign_id=SIGN_ID)
        assert not result.ok
        assert result.delivered == ("13800000000",)
        assert result.refused == (EndpointResult("13900000000", code="SMN.0160", message="invalid endpoint"),)

    def test_number_not_in_answer_is_missing(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """A number SMN did not mention is a failure with SMN_ALERT.MISSING."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        result = client.publish_sms(["13800000000", "13900000000"], "x", sign_id=SIGN_ID)
        (missing,) = result.refused
        assert (missing.endpoint, missing.code, missing.ok) == ("13900000000", MISSING_CODE, False)
        assert missing.message

    def test_number_answered_without_separators_matches(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """A number sent as 1867669-6912 and answered as 18676696912 counts as delivered."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["18676696912"]))
        result = client.publish_sms(["1867669-6912"], "x", sign_id=SIGN_ID)
        assert result.results == (EndpointResult("1867669-6912", message_id="mid-0"),)

    def test_first_request_failure_raises(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """When the first request fails, the error is raised for the caller to handle."""
        rsps.add(responses.POST, SMS_URL, status=503, json={"code": "SMN.0016", "message": "busy"})
        with pytest.raises(SMNServerError) as info:
            client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert info.value.code == "SMN.0016"

    def test_later_chunk_failure_is_reported_not_raised(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """A failing second request marks its numbers failed; the first and third still count."""
        numbers = [f"+86138{i:08d}" for i in range(2345)]
        error = {"request_id": "bad-2", "code": "SMN.0016", "message": "internal error"}
        calls: list[int] = []

        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            calls.append(1)
            return (500, {}, json.dumps(error)) if len(calls) == 2 else echo_ok(request)

        rsps.add_callback(responses.POST, SMS_URL, callback=answer)
        result = client.publish_sms(numbers, "x", sign_id=SIGN_ID)
        assert len(rsps.calls) == 3
        assert result.delivered == tuple(numbers[:1000] + numbers[2000:])
        assert result.refused == tuple(
            EndpointResult(n, code="SMN.0016", message="internal error") for n in numbers[1000:2000]
        )
        assert "bad-2" in result.request_ids

    def test_later_chunk_connection_error_is_reported(
        self, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """A connection error on a later request marks its numbers failed with a message naming the host."""
        numbers = [f"+86138{i:08d}" for i in range(1001)]
        calls: list[int] = []

        def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
            calls.append(1)
            if len(calls) == 2:
                raise requests.ConnectionError("boom")
            return echo_ok(request)

        rsps.add_callback(responses.POST, SMS_URL, callback=answer)
        result = client.publish_sms(numbers, "x", sign_id=SIGN_ID)
        (failed,) = result.refused
        assert failed.endpoint == numbers[1000]
        assert failed.code is None
        assert failed.message is not None
        assert HOST in failed.message


class TestSmsValidation:
    @pytest.mark.parametrize(
        ("endpoints", "message", "options", "named"),
        [
            (["1380000abcd"], "x", {"sign_id": SIGN_ID}, "endpoints"),
            ([], "x", {"sign_id": SIGN_ID}, "endpoints"),
            ("13800000000", "x", {"sign_id": SIGN_ID}, "endpoints"),
            (["13800000000"], "x" * 491, {"sign_id": SIGN_ID}, "message"),
            (["13800000000"], "   ", {"sign_id": SIGN_ID}, "message"),
            (["13800000000"], "x", {}, "sign_id"),
            (["13800000000"], "【A】x", {"sign_id": SIGN_ID, "message_include_sign_flag": "true"}, "sign_id"),
            (["13800000000"], "x", {"message_include_sign_flag": "false"}, "message_include_sign_flag"),
            (["13800000000"], "no sign", {"message_include_sign_flag": "true"}, "message"),
            (["13800000000"], "x【A】", {"message_include_sign_flag": True}, "message"),
            (["13800000000"], "x", {"sign_id": SIGN_ID, "extend_code": "c" * 33}, "extend_code"),
            (["13800000000"], "x", {"sign_id": SIGN_ID, "extend_code": "码" * 11}, "extend_code"),
            (["13800000000"], "x", {"sign_id": SIGN_ID, "extend_src_id": "123456789"}, "extend_src_id"),
            (["13800000000"], "x", {"sign_id": SIGN_ID, "extend_src_id": "12a"}, "extend_src_id"),
            (["13800000000"], "x", {"sign_id": SIGN_ID, "extend_src_id": ""}, "extend_src_id"),
        ],
    )
    def test_invalid_request_is_refused_before_sending(
        self, endpoints: Any, message: str, options: dict[str, Any], named: str, rsps: responses.RequestsMock
    ) -> None:
        """Every field rule of the seed is checked locally, naming the field, and nothing is sent."""
        with make_client() as made, pytest.raises(SMNConfigError, match=named):
            made.publish_sms(endpoints, message, **options)
        assert len(rsps.calls) == 0

    def test_limits_themselves_are_accepted(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """490 characters, a 30-byte multibyte extend_code and 8 digits are within the rules."""
        rsps.add(responses.POST, SMS_URL, json=ok_answer(["13800000000"]))
        client.publish_sms(
            ["13800000000"], "字" * 490, sign_id=SIGN_ID, extend_code="码" * 10, extend_src_id="12345678"
        )
        assert len(rsps.calls) == 1


class TestHttpFailures:
    def test_throttled_with_retry_after(self, rsps: responses.RequestsMock, client: SMNClient) -> None:
        """A 429 raises SMNThrottledError carrying Retry-After."""
        body = {"error_code": "APIG.0308", "error_msg": "throttled", "request_id": "t-1"}
        rsps.add(responses.POST, SMS_URL, status=429, json=body, headers={"Retry-After": "4"})
        with pytest.raises(SMNThrottledError) as info:
            client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert (info.value.retry_after, info.value.request_id) == (4.0, "t-1")

    @pytest.mark.parametrize(
        "body", ["<html><body>OK</body></html>", "[]", '{"request_id": "r"}', '{"result": "nope"}']
    )
    def test_malformed_200_is_a_server_error(
        self, body: str, rsps: responses.RequestsMock, client: SMNClient
    ) -> None:
        """A 200 that is not SMN's JSON raises a retryable SMNServerError."""
        rsps.add(responses.POST, SMS_URL, status=200, body=body)
        with pytest.raises(SMNServerError, match="malformed answer"):
            client.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)

    @pytest.mark.parametrize(
        ("failure", "says"),
        [
            (requests.ConnectionError(f"proxy http://u:{SK}@proxy failed"), "connection failed"),
            (requests.ConnectTimeout("slow"), "connection timed out"),
            (requests.ReadTimeout("slow"), "no answer in time"),
            (requests.exceptions.SSLError("bad cert"), "TLS"),
            (requests.exceptions.ChunkedEncodingError("cut"), "broke"),
        ],
    )
    def test_network_failures_become_connection_errors(
        self, failure: Exception, says: str, rsps: responses.RequestsMock
    ) -> None:
        """Timeouts, refused/reset connections and TLS failures raise SMNConnectionError from the cause."""
        rsps.add(responses.POST, SMS_URL, body=failure)
        with make_client(security_token=SECURITY_TOKEN) as made, pytest.raises(SMNConnectionError) as info:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert info.value.__cause__ is failure
        assert info.value.retryable
        assert HOST in str(info.value)
        assert says in str(info.value)
        assert type(failure).__name__ in str(info.value)
        assert_no_secret(str(info.value), repr(info.value))

    def test_refused_connection_on_a_real_socket(self) -> None:
        """Nothing listening on the port gives SMNConnectionError naming host and port."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        made = make_client(endpoint_url=f"http://127.0.0.1:{port}", timeout=2)
        with made, pytest.raises(SMNConnectionError, match=f"127.0.0.1:{port}") as info:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert isinstance(info.value.__cause__, requests.ConnectionError)

    def test_bad_proxy_setting_becomes_a_connection_error_without_its_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A malformed HTTP_PROXY with a password raises SMNConnectionError not showing the password."""
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, "http://admin:Sup3rSecret@proxy:99999")
        made = make_client(endpoint_url="http://127.0.0.1:9", timeout=2)
        with made, pytest.raises(SMNConnectionError, match=r"127\.0\.0\.1:9") as info:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert "InvalidURL" in str(info.value)
        assert info.value.retryable
        traceback_text = "".join(traceback.format_exception(type(info.value), info.value, None))
        for shown in (str(info.value), repr(info.value), traceback_text):
            assert "Sup3rSecret" not in shown
            assert "admin" not in shown

    def test_vanished_ca_bundle_becomes_a_connection_error(self, tmp_path: Path) -> None:
        """A CA bundle deleted after start-up raises SMNConnectionError (retryable), not a bare OSError."""
        bundle = tmp_path / "ca.pem"
        bundle.write_text("")
        made = make_client(endpoint_url="https://127.0.0.1:9", verify=str(bundle), timeout=2)
        bundle.unlink()
        with made, pytest.raises(SMNConnectionError, match=r"127\.0\.0\.1:9") as info:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert type(info.value.__cause__) is OSError
        assert "OSError" in str(info.value)
        assert info.value.retryable
        assert str(bundle) not in str(info.value)

    def test_error_text_never_holds_secrets(self, rsps: responses.RequestsMock) -> None:
        """Errors built from a server answer show no SK or token."""
        rsps.add(
            responses.POST, SMS_URL, status=401, json={"error_code": "APIG.0301", "error_msg": "bad sig"}
        )
        with make_client(security_token=SECURITY_TOKEN) as made, pytest.raises(SMNAuthError) as info:
            made.publish_sms(["13800000000"], "x", sign_id=SIGN_ID)
        assert_no_secret(str(info.value), repr(info.value))


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
