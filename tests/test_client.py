"""Tests for smn_alert._client: wire format, signing, batching, validation and error mapping."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import traceback
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from smn_alert import _client_settings as connection
from smn_alert import _signer as signer
from smn_alert._client import SMNClient
from smn_alert._client_settings import DEFAULT_TIMEOUT
from smn_alert._responses import (
    MISSING_CODE,
    EndpointResult,
    TopicPublishResult,
)
from smn_alert.errors import (
    SMNAuthError,
    SMNConfigError,
    SMNConnectionError,
    SMNServerError,
    SMNThrottledError,
)

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
