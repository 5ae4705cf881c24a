from __future__ import annotations

import ast
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from requests.utils import requote_uri

import smn_alert
from smn_alert import SMNHandler, SMNServerError
from smn_alert import _signer as signer
from smn_alert import _smn as fields
from smn_alert.testing import DEFAULT_RECIPIENTS, FakeClock, FakeSMNServer, RecordingSender
from smn_alert.testing import _canonical as _fake_canonical
from smn_alert.testing import _table as _fake_table
from smn_alert.testing._auth import Authenticator
from smn_alert.testing._wire import Rejection, Request

pytest_plugins = ["pytester"]

SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
ALICE, BOB = "+8613800000000", "+8613900000000"
NOON = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
#: Requests signed by Huawei's official Python signer (a copy of ../shared/vectors/signer-official.json).
OFFICIAL = json.loads((Path(__file__).parent / "data" / "signer-official.json").read_text(encoding="utf-8"))
OFFICIAL_IDS = [case["name"] for case in OFFICIAL["cases"]]
#: The SmsBatchPublish page the fake's rules come from, when ../shared is beside the checkout.
SEED_FILES = sorted((Path(__file__).resolve().parents[1].parent / "shared" / "seed").glob("*.txt"))


def sign(
    server: FakeSMNServer,
    url: str,
    body: bytes,
    *,
    sk: str | None = None,
    date: str | None = None,
    signed: list[str] | None = None,
    project_header: str | None = None,
) -> dict[str, str]:
    """Headers of a request signed like Huawei's SDKs sign it."""
    headers = {
        "Content-Type": "application/json;charset=UTF-8",
        "Host": urlsplit(url).netloc,
        "X-Sdk-Date": date or signer.sdk_date(),
        "X-Project-Id": project_header or server.project_id,
    }
    secret = sk if sk is not None else server.settings()["sk"]
    headers["Authorization"] = signer.authorization_header(
        server.ak, secret, "POST", url, headers, body, signed
    )
    return headers


def sms_path(server: FakeSMNServer, project_id: str | None = None) -> str:
    return f"/v2/{project_id or server.project_id}/notifications/sms"


def topic_path(server: FakeSMNServer, urn: str) -> str:
    return f"/v2/{server.project_id}/notifications/topics/{quote(urn, safe='')}/publish"


def sms_body(**changes: Any) -> dict[str, Any]:
    """A valid SmsBatchPublish body with ``changes``; a change to ``None`` removes the field."""
    body: dict[str, Any] = {"endpoints": [ALICE, BOB], "message": "db down", "sign_id": SIGN_ID, **changes}
    return {key: value for key, value in body.items() if value is not None}


def post(
    http: requests.Session,
    server: FakeSMNServer,
    path: str,
    payload: object,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    **signing: Any,
) -> requests.Response:
    """POST ``payload`` (JSON, or bytes as is), signed unless ``headers`` are given; the body is read."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    url = server.url + path
    sent = headers if headers is not None else sign(server, url, body, **signing)
    with http.post(url, data=body, headers=sent, timeout=timeout) as response:
        return response


def error_of(response: requests.Response) -> tuple[int, str]:
    """Status and SMN code of an error answer in SMN's body shape."""
    body = response.json()
    assert set(body) == {"request_id", "code", "message"}, body
    return response.status_code, body["code"]


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def server() -> Iterator[FakeSMNServer]:
    with FakeSMNServer() as fake:
        yield fake


class TestSmsBatchPublish:
    def test_signed_batch_gets_one_result_per_number_in_order(self, http, server):
        """A signed batch is answered 200 with one entry per number sent, duplicates as SMN.0190."""
        response = post(http, server, sms_path(server), sms_body(endpoints=[ALICE, BOB, ALICE, "12ab"]))
        assert response.status_code == 200
        body = response.json()
        assert response.headers["X-Request-Id"] == body["request_id"]
        assert len(body["request_id"]) == 32
        first, second, again, bad = body["result"]
        assert [first["endpoint"], second["endpoint"]] == [ALICE, BOB]
        assert len(first["message_id"]) == 32 and first["message_id"] != second["message_id"]
        assert again == {"endpoint": ALICE, "code": "SMN.0190", "message": "This endpoint already exists."}
        assert (bad["endpoint"], bad["code"]) == ("12ab", "SMN.0160")

    def test_accepted_batch_is_recorded(self, http, server):
        """What the server accepted is in .messages with the fields as sent and who got it."""
        payload = sms_body(endpoints=[ALICE, BOB, BOB], extend_code="ticket-42", extend_src_id="1234")
        before = time.time()
        response = post(http, server, sms_path(server), payload)
        [message] = server.messages
        assert message.endpoints == (ALICE, BOB, BOB)
        assert message.delivered == (ALICE, BOB)
        assert message.refused == ((BOB, "SMN.0190"),)
        assert (message.message, message.sign_id, message.topic_urn) == ("db down", SIGN_ID, None)
        assert (message.extend_code, message.extend_src_id) == ("ticket-42", "1234")
        assert message.request_id == response.json()["request_id"]
        assert before <= message.received_at <= time.time()

    def test_same_number_written_differently_is_two_numbers(self, http, server):
        """De-duplication is by exact string, as the seed says: 138... and +86138... both get a message."""
        post(http, server, sms_path(server), sms_body(endpoints=["13800000000", "+8613800000000"]))
        assert server.messages[0].delivered == ("13800000000", "+8613800000000")

    def test_other_project_in_path_is_refused(self, http, server):
        """A path with another project id is refused with SMN.0001 and names the server's project id."""
        response = post(http, server, sms_path(server, "a" * 32), sms_body())
        assert error_of(response) == (403, "SMN.0001")
        assert server.project_id in response.json()["message"]
        assert server.messages == []

    def test_other_project_in_header_is_refused(self, http, server):
        """An X-Project-Id header naming another project is refused with SMN.0001."""
        response = post(http, server, sms_path(server), sms_body(), project_header="b" * 32)
        assert error_of(response) == (403, "SMN.0001")

    @pytest.mark.parametrize("path", ["/v2/notifications/sms", "/v3/x/notifications/sms", "/"])
    def test_unknown_route_is_404_with_smn_body(self, http, server, path):
        """A path SMN does not serve is answered 404 in SMN's error body shape."""
        assert error_of(post(http, server, path, sms_body())) == (404, "APIG.0101")

    def test_get_is_404(self, http, server):
        """Only POST is served on the publish paths."""
        with http.get(server.url + sms_path(server), timeout=5) as response:
            assert error_of(response) == (404, "APIG.0101")


class TestAuthentication:
    def test_wrong_sk_is_401_with_gateway_body(self, http, server):
        """A request signed with another SK gets the gateway's 401 APIG.0301 body and is not recorded."""
        response = post(http, server, sms_path(server), sms_body(), sk="not-the-secret")
        assert response.status_code == 401
        body = response.json()
        assert set(body) == {"error_code", "error_msg", "request_id"}
        assert body["error_code"] == "APIG.0301"
        assert body["error_msg"].startswith("Incorrect IAM authentication information: ")
        assert response.headers["X-Request-Id"] == body["request_id"]
        assert server.messages == []

    def test_error_does_not_show_the_sk(self, http, server):
        """Neither the refusal nor the server's repr shows the secret key."""
        response = post(http, server, sms_path(server), sms_body(), sk="other")
        secret = server.settings()["sk"]
        assert secret not in response.text and secret not in repr(server)

    def test_tampered_body_is_refused(self, http, server):
        """A body changed after signing no longer matches the signature."""
        body = json.dumps(sms_body()).encode()
        headers = sign(server, server.url + sms_path(server), body)
        tampered = json.dumps(sms_body(endpoints=["+8613700000000"])).encode()
        assert post(http, server, sms_path(server), tampered, headers=headers).status_code == 401

    def test_query_string_is_signed(self, http, server):
        """The query is part of what is signed: signed with it passes, added afterwards fails."""
        body = json.dumps(sms_body()).encode()
        path = sms_path(server) + "?b=2&a=1"
        assert post(http, server, path, body).status_code == 200
        headers = sign(server, server.url + sms_path(server), body)
        assert post(http, server, path, body, headers=headers).status_code == 401

    def test_percent_encoded_path_is_verified_as_received(self, http, server):
        """The signature over a percent-encoded topic path is checked against the raw path."""
        urn = f"urn:smn:cn-north-4:{server.project_id}:ops"
        assert post(http, server, topic_path(server, urn), {"message": "db down"}).status_code == 200

    @pytest.mark.parametrize(
        "signed",
        [
            ["host", "x-sdk-date", "x-project-id"],
            ["content-type", "x-sdk-date", "x-project-id"],
            ["content-type", "host", "x-sdk-date"],
        ],
    )
    def test_required_headers_must_be_signed(self, http, server, signed):
        """Leaving content-type, host, or a sent x-project-id out of SignedHeaders is refused."""
        response = post(http, server, sms_path(server), sms_body(), signed=signed)
        assert response.status_code == 401
        assert "not signed" in response.json()["error_msg"]

    @pytest.mark.parametrize(("offset", "status"), [(-901, 401), (901, 401), (-899, 200), (899, 200)])
    def test_date_more_than_15_minutes_off_is_refused(self, http, offset, status):
        """An X-Sdk-Date more than 900 s from the server's clock is refused; within it is accepted."""
        with FakeSMNServer(wall_clock=NOON.timestamp) as fake:
            date = signer.sdk_date(NOON + timedelta(seconds=offset))
            response = post(http, fake, sms_path(fake), sms_body(), date=date)
        assert response.status_code == status
        if status == 401:
            assert "X-Sdk-Date" in response.json()["error_msg"]

    def test_unreadable_date_is_refused(self, http, server):
        """An X-Sdk-Date not in the gateway's format is refused."""
        assert post(http, server, sms_path(server), sms_body(), date="2024-05-01 12:00").status_code == 401

    def test_unsigned_request_is_refused(self, http, server):
        """No Authorization and no token: 401."""
        headers = {"Content-Type": "application/json"}
        assert post(http, server, sms_path(server), sms_body(), headers=headers).status_code == 401

    def test_five_bad_signatures_lock_the_ak_for_300_seconds(self, http):
        """After 5 bad signatures even a good one is refused as locked, until 300 s have passed."""
        clock = FakeClock()
        with FakeSMNServer(clock=clock) as fake:
            for _ in range(5):
                response = post(http, fake, sms_path(fake), sms_body(), sk="wrong")
                assert "locked" not in response.json()["error_msg"]
            locked = post(http, fake, sms_path(fake), sms_body())
            assert locked.status_code == 401 and "locked" in locked.json()["error_msg"]
            assert locked.json()["error_code"] == "APIG.0301"
            clock.now += 299.0
            assert post(http, fake, sms_path(fake), sms_body()).status_code == 401
            clock.now += 1.0
            assert post(http, fake, sms_path(fake), sms_body()).status_code == 200

    def test_a_good_signature_resets_the_count(self, http):
        """Only consecutive failures count: 4 bad, 1 good, 4 bad leaves the AK usable."""
        with FakeSMNServer(clock=FakeClock()) as fake:
            for bad in (4, 4):
                for _ in range(bad):
                    post(http, fake, sms_path(fake), sms_body(), sk="wrong")
                assert post(http, fake, sms_path(fake), sms_body()).status_code == 200

    def test_auth_token_is_accepted(self, http):
        """With auth_token set, a request carrying that X-Auth-Token needs no signature."""
        with FakeSMNServer(auth_token="tok-123") as fake:
            response = post(http, fake, sms_path(fake), sms_body(), headers={"X-Auth-Token": "tok-123"})
            assert response.status_code == 200
            assert fake.requests[0].headers["x-auth-token"] == "<redacted>"

    @pytest.mark.parametrize("auth_token", ["tok-123", None])
    def test_wrong_token_is_refused(self, http, auth_token):
        """A token that is not the configured one (or any token when none is configured) gets 401."""
        with FakeSMNServer(auth_token=auth_token) as fake:
            response = post(http, fake, sms_path(fake), sms_body(), headers={"X-Auth-Token": "tok-999"})
        assert response.status_code == 401
        assert response.json()["error_code"] == "APIG.0301"

    def test_check_signature_false_accepts_unsigned(self, http):
        """check_signature=False serves requests without any authentication."""
        with FakeSMNServer(check_signature=False) as fake:
            headers = {"Content-Type": "application/json"}
            assert post(http, fake, sms_path(fake), sms_body(), headers=headers).status_code == 200

    def test_credential_headers_are_redacted_in_records(self, http, server):
        """Recorded requests keep the Authorization header name but not its value."""
        post(http, server, sms_path(server), sms_body())
        headers = server.requests[0].headers
        assert headers["authorization"] == "<redacted>"
        assert headers["x-project-id"] == server.project_id


class TestValidation:
    @pytest.mark.parametrize(
        ("changes", "status", "code"),
        [
            ({"endpoints": None}, 400, "SMN.0012"),
            ({"endpoints": []}, 400, "SMN.0012"),
            ({"endpoints": ALICE}, 400, "SMN.0012"),
            ({"endpoints": [13800000000]}, 400, "SMN.0012"),
            ({"endpoints": [ALICE] * 1001}, 400, "SMN.0159"),
            ({"message": None}, 403, "SMN.0009"),
            ({"message": ""}, 403, "SMN.0009"),
            ({"message": "x" * 491}, 403, "SMN.0009"),
            ({"message": 42}, 403, "SMN.0009"),
            ({"sign_id": None}, 400, "SMN.0080"),
            ({"sign_id": "not a sign id!"}, 400, "SMN.0080"),
            ({"sign_id": None, "message_include_sign_flag": "false"}, 400, "SMN.0080"),
            ({"sign_id": None, "message_include_sign_flag": "true"}, 403, "SMN.0009"),
            ({"message_include_sign_flag": "yes"}, 400, "SMN.0004"),
            ({"extend_code": "x" * 33}, 400, "SMN.0004"),
            ({"extend_code": "é" * 17}, 400, "SMN.0004"),
            ({"extend_src_id": "123456789"}, 400, "SMN.0004"),
            ({"extend_src_id": "12a"}, 400, "SMN.0004"),
            ({"extend_src_id": 1234}, 400, "SMN.0004"),
        ],
    )
    def test_invalid_field_is_refused_with_its_code(self, http, server, changes, status, code):
        """Each rule of the seed page is answered with its status and SMN code, and nothing is recorded."""
        response = post(http, server, sms_path(server), sms_body(**changes))
        assert error_of(response) == (status, code)
        assert server.messages == []
        assert server.requests[0].status == status

    @pytest.mark.parametrize(
        "changes",
        [
            {"message": "x" * 490},
            {"endpoints": [f"+86138{i:08d}" for i in range(1000)]},
            {"extend_code": "x" * 32},
            {"extend_src_id": "12345678"},
            {"sign_id": None, "message_include_sign_flag": "true", "message": "【XX商城】db down"},
            {"message_include_sign_flag": "false"},
        ],
    )
    def test_values_at_the_limits_are_accepted(self, http, server, changes):
        """Values just inside each limit are accepted."""
        assert post(http, server, sms_path(server), sms_body(**changes)).status_code == 200
        assert len(server.messages) == 1

    def test_boolean_flag_says_it_must_be_a_string(self, http, server):
        """A JSON true for message_include_sign_flag is refused with a message saying it must be a string."""
        payload = sms_body(sign_id=None, message_include_sign_flag=True, message="【XX商城】db down")
        response = post(http, server, sms_path(server), payload)
        assert error_of(response) == (400, "SMN.0004")
        assert "string" in response.json()["message"]

    @pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"", b"\xff\xfe"])
    def test_body_that_is_not_a_json_object_is_refused(self, http, server, body):
        """A body that is not a JSON object gets 400 in SMN's body shape."""
        assert error_of(post(http, server, sms_path(server), body)) == (400, "SMN.0004")


class TestTopicPublish:
    def test_publish_to_percent_encoded_urn(self, http, server):
        """A publish to a percent-encoded topic URN is accepted and recorded with the decoded URN."""
        urn = f"urn:smn:cn-north-4:{server.project_id}:ops_alerts"
        response = post(http, server, topic_path(server, urn), {"message": "db down", "subject": "prod"})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"request_id", "message_id"}
        assert response.headers["X-Request-Id"] == body["request_id"]
        [message] = server.messages
        assert (message.topic_urn, message.message, message.subject) == (urn, "db down", "prod")
        assert (message.endpoints, message.delivered) == ((), ())
        assert "%3A" in server.requests[0].path

    @pytest.mark.parametrize("text", ["db [prod] down", "【XX】db down", "db down】", "a]"])
    def test_brackets_in_topic_message_are_refused(self, http, server, text):
        """[, ], 【 or 】 in a topic message is refused with 400."""
        urn = f"urn:smn:cn-north-4:{server.project_id}:ops"
        assert error_of(post(http, server, topic_path(server, urn), {"message": text})) == (400, "SMN.0004")
        assert server.messages == []

    @pytest.mark.parametrize(
        ("payload", "status", "code"),
        [
            ({"message": "x" * 491}, 403, "SMN.0009"),
            ({"subject": "s"}, 403, "SMN.0009"),
            ({"message": "db down", "subject": "字" * 171}, 400, "SMN.0004"),
        ],
    )
    def test_invalid_topic_publish_is_refused(self, http, server, payload, status, code):
        """A missing or too long message, or a subject over 512 bytes, is refused."""
        urn = f"urn:smn:cn-north-4:{server.project_id}:ops"
        assert error_of(post(http, server, topic_path(server, urn), payload)) == (status, code)

    @pytest.mark.parametrize("urn", ["urn:smn:cn-north-4:" + "c" * 32 + ":ops", "not-a-urn", "urn:smn:x:y"])
    def test_unknown_topic_is_not_found(self, http, server, urn):
        """A URN of another project, or not a URN at all, is answered 404 topic not found."""
        response = post(http, server, topic_path(server, urn), {"message": "db down"})
        assert error_of(response) == (404, "SMN.0006")


def official_headers(case: dict[str, Any]) -> dict[str, str]:
    """The headers the official signer sent for ``case`` (lower-case names), Authorization included."""
    lines = case["canonical_request"].split("\n")
    listed = dict(line.partition(":")[::2] for line in lines[3 : lines.index("", 3)])
    given = {name.lower(): value for name, value in case["headers"].items()}
    return {**listed, **given, "host": case["host"], "authorization": case["authorization"]}


def official_time(case: dict[str, Any]) -> float:
    moment = datetime.strptime(case["headers"]["X-Sdk-Date"], "%Y%m%dT%H%M%SZ")
    return moment.replace(tzinfo=timezone.utc).timestamp()


def official_gateway(case: dict[str, Any]) -> Authenticator:
    """The fake's gateway checks, for the official AK/SK, at the time the case was signed."""
    return Authenticator(
        OFFICIAL["ak"], OFFICIAL["sk"], auth_token=None, skew_limit=900.0, lock_after=5, lock_seconds=300.0,
        clock=FakeClock(), wall_clock=lambda: official_time(case),
    )  # fmt: skip


def official_request(case: dict[str, Any], target: str | None = None) -> Request:
    body = case["body"].encode("utf-8")
    return Request(case["method"], target or case["uri_sent"], official_headers(case), body, "r", 0.0)


class TestOfficialSignatures:
    @pytest.mark.parametrize("case", OFFICIAL["cases"], ids=OFFICIAL_IDS)
    def test_gateway_accepts_the_official_signers_request(self, case):
        """Each request Huawei's official signer signed passes the fake's signature check."""
        official_gateway(case).check(official_request(case))

    @pytest.mark.parametrize("case", OFFICIAL["cases"], ids=OFFICIAL_IDS)
    def test_gateway_rebuilds_the_official_canonical_request(self, case):
        """The fake computes the official canonical request from the request as it arrives."""
        signed = _fake_canonical.parse(case["authorization"])
        assert signed is not None
        body, headers = case["body"].encode(), official_headers(case)
        rebuilt = _fake_canonical.canonical_request(
            case["method"], case["uri_sent"], headers, signed.signed_headers, body
        )
        assert rebuilt == case["canonical_request"]

    @pytest.mark.parametrize("case", OFFICIAL["cases"], ids=OFFICIAL_IDS)
    def test_gateway_refuses_the_official_request_with_a_query_added(self, case):
        """The same request with a query parameter added after signing is refused."""
        target = case["uri_sent"] + ("&" if "?" in case["uri_sent"] else "?") + "added=1"
        with pytest.raises(Rejection, match="verify aksk signature fail"):
            official_gateway(case).check(official_request(case, target))

    def test_declared_body_hash_must_match_the_body(self):
        """A signed X-Sdk-Content-Sha256 that is a hash, but not the body's, is refused."""
        [case] = [
            case for case in OFFICIAL["cases"] if case["name"] == "form content type (unsigned payload)"
        ]
        request = official_request(case)
        request.headers["x-sdk-content-sha256"] = "0" * 64
        with pytest.raises(Rejection, match="X-Sdk-Content-Sha256"):
            official_gateway(case).check(request)

    @pytest.mark.parametrize(
        "case",
        [
            case
            for case in OFFICIAL["cases"]
            if case["method"] == "POST" and "/notifications/" in case["path"]
        ],
        ids=lambda case: case["name"],
    )
    def test_official_request_passes_the_fake_over_http(self, http, case):
        """Sent over HTTP as the SDK sends it, an official request gets past the fake's gateway."""
        project = case["headers"]["X-Project-Id"]
        fake = FakeSMNServer(
            project_id=project, ak=OFFICIAL["ak"], sk=OFFICIAL["sk"], wall_clock=lambda: official_time(case)
        )
        headers = {name: value.strip() for name, value in official_headers(case).items()}
        with (
            fake,
            http.post(
                fake.url + requote_uri(case["uri_sent"]),
                data=case["body"].encode(),
                headers=headers,
                timeout=5,
            ) as response,
        ):
            assert response.status_code != 401, response.text
            assert "sign_id" in case["body"] or error_of(response) == (400, "SMN.0080")


#: For each rule of the fake's table (by the seed's words), a change to a valid body that breaks only it.
SEED_REFUSALS = [
    ("String列表", {"endpoints": ALICE}, 400, "SMN.0012"),
    ("手机号码个数不能超过1000", {"endpoints": [ALICE] * 1001}, 400, "SMN.0159"),
    ("长度不超过490个字符", {"message": "字" * 491}, 403, "SMN.0009"),
    ('参数为"true" 或 "false"', {"message_include_sign_flag": "TRUE"}, 400, "SMN.0004"),
    (
        "将签名放置于“【】”括号中",
        {"sign_id": None, "message_include_sign_flag": "true", "message": "db down 【XX商城】"},
        403,
        "SMN.0009",
    ),
    ("当message_include_sign_flag参数不传递时", {"sign_id": None}, 400, "SMN.0080"),
    ("短信签名ID在创建短信签名时由系统自动生成", {"sign_id": "签名"}, 400, "SMN.0080"),
    ("长度小于等于32个字节", {"extend_code": "码" * 11}, 400, "SMN.0004"),
    ("8位以内的数字", {"extend_src_id": ""}, 400, "SMN.0004"),
]

#: The seed's two sample requests, and values at each of its limits.
SEED_ACCEPTED = [
    {
        "endpoints": ["1867669-6912", "18246161627", "18246161627", "183444455666"],
        "message": "Sms message test",
        "sign_id": "0b364890f1574045a59b7c79e4d734cd",
    },
    {
        "endpoints": ["18676696912", "18246161627", "18246161627", "183444455666"],
        "message": "【XX商城】Sms message test.",
        "message_include_sign_flag": "true",
    },
    sms_body(message="字" * 490, extend_code="码" * 10 + "ab", extend_src_id="12345678"),
    sms_body(endpoints=[f"+86138{i:08d}" for i in range(1000)]),
]


def permissive_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break every rule of the client's validation so that it accepts anything."""
    for name in dir(fields):
        if name.startswith("check_"):
            monkeypatch.setattr(fields, name, lambda value=None, *_args, **_kwargs: value)
    monkeypatch.setattr(fields, "check_sign", lambda sign_id, flag: (sign_id, flag))
    monkeypatch.setattr(fields, "MAX_ENDPOINTS_PER_REQUEST", 10**6)
    monkeypatch.setattr(fields, "MAX_MESSAGE_LENGTH", 10**6)


class TestOwnRules:
    def test_fake_imports_none_of_the_clients_rules(self):
        """No part of FakeSMNServer imports the client's field checks, signer or client."""
        client_code = {"smn_alert._smn", "smn_alert._signer", "smn_alert._client"}
        paths = sorted((Path(smn_alert.__file__).parent / "testing").glob("*.py"))
        assert len(paths) >= 8  # the fake's parts are there to be read
        for path in paths:
            imported: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imported |= {alias.name for alias in node.names}
                elif isinstance(node, ast.ImportFrom):
                    imported |= {node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)}
            assert not imported & client_code, path.name

    def test_wrong_client_rules_do_not_change_what_the_fake_refuses(self, monkeypatch, http, server):
        """With every check in smn_alert._smn broken to accept anything, the fake refuses by the seed."""
        permissive_fields(monkeypatch)
        for _, changes, status, code in SEED_REFUSALS:
            assert error_of(post(http, server, sms_path(server), sms_body(**changes))) == (status, code)
        response = post(http, server, sms_path(server), sms_body(endpoints=["12ab"]))
        assert response.json()["result"][0]["code"] == "SMN.0160"
        assert server.messages[0].delivered == ()

    def test_wrong_client_signing_does_not_change_what_the_fake_accepts(self, monkeypatch, http, server):
        """With the client's canonicalization broken, official requests still pass and the client's fail."""
        monkeypatch.setattr(signer, "_canonical_query", lambda query: "")
        for case in OFFICIAL["cases"]:
            official_gateway(case).check(official_request(case))
        assert post(http, server, sms_path(server) + "?a=1", sms_body()).status_code == 401

    @pytest.mark.parametrize(
        ("words", "changes", "status", "code"), SEED_REFUSALS, ids=[row[0] for row in SEED_REFUSALS]
    )
    def test_each_seed_rule_is_refused_with_its_code(self, http, server, words, changes, status, code):
        """A body breaking one rule of the seed gets that rule's status, code and message."""
        response = post(http, server, sms_path(server), sms_body(**changes))
        assert error_of(response) == (status, code)
        [rule] = [rule for rule in _fake_table.SMS_RULES if rule.seed == words]
        assert response.json()["message"] == rule.message

    def test_every_rule_of_the_table_has_a_refusal_example(self):
        """The examples above cover the fake's SMS rules one for one, in the order they are checked."""
        assert [rule.seed for rule in _fake_table.SMS_RULES] == [row[0] for row in SEED_REFUSALS]

    @pytest.mark.parametrize("payload", SEED_ACCEPTED, ids=["sample 1", "sample 2", "limits", "1000 numbers"])
    def test_seed_samples_and_limits_are_accepted(self, http, server, payload):
        """The seed's own sample requests, and values just inside each limit, are accepted."""
        assert post(http, server, sms_path(server), payload).status_code == 200

    def test_rules_quote_the_seed(self):
        """Each rule's words are the seed's, and its limits are the seed's numbers."""
        if not SEED_FILES:
            pytest.skip("../shared/seed is not beside this checkout")
        seed = "".join(path.read_text(encoding="utf-8") for path in SEED_FILES)
        assert [rule.seed for rule in _fake_table.SMS_RULES if rule.seed not in seed] == []
        limits = {
            r"手机号码个数不能超过(\d+)": _fake_table.MAX_ENDPOINTS,
            r"长度不超过(\d+)个字符": _fake_table.MAX_MESSAGE_CHARS,
            r"长度小于等于(\d+)个字节": _fake_table.MAX_EXTEND_CODE_BYTES,
            r"(\d+)位以内的数字": _fake_table.MAX_EXTEND_SRC_ID_DIGITS,
        }
        for pattern, limit in limits.items():
            found = re.search(pattern, seed)
            assert found is not None and int(found.group(1)) == limit, pattern


class TestFaults:
    def test_fail_next_answers_the_chosen_error_once(self, http, server):
        """fail_next gives one request the chosen status and SMN code; the next one is served."""
        server.fail_next(status=500, code="SMN.0018", message="boom")
        failed = post(http, server, sms_path(server), sms_body())
        assert error_of(failed) == (500, "SMN.0018")
        assert failed.json()["message"] == "boom"
        assert post(http, server, sms_path(server), sms_body()).status_code == 200
        assert len(server.messages) == 1

    def test_fail_next_gateway_shape_with_retry_after(self, http, server):
        """shape='gateway' answers the gateway's body, and retry_after sets the Retry-After header."""
        server.fail_next(status=429, code="APIG.0308", message="throttled", retry_after=7, shape="gateway")
        response = post(http, server, sms_path(server), sms_body())
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        body = response.json()
        assert (body["error_code"], body["error_msg"]) == ("APIG.0308", "throttled")
        assert body["request_id"] == response.headers["X-Request-Id"]

    @pytest.mark.parametrize(
        ("retry_after", "header"),
        [(7.0, "7"), (2.5, "2.5"), ("Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")],
    )
    def test_retry_after_forms(self, http, server, retry_after, header):
        """Retry-After is sent as whole seconds when whole, else as given (an HTTP date stays a date)."""
        server.fail_next(status=503, retry_after=retry_after)
        assert post(http, server, sms_path(server), sms_body()).headers["Retry-After"] == header

    def test_no_retry_after_unless_asked(self, http, server):
        """fail_next without retry_after sends no Retry-After header."""
        server.fail_next()
        assert "Retry-After" not in post(http, server, sms_path(server), sms_body()).headers

    def test_fail_next_n_fails_n_requests(self, http, server):
        """fail_next(n=2) fails exactly two requests."""
        server.fail_next(2)
        statuses = [post(http, server, sms_path(server), sms_body()).status_code for _ in range(3)]
        assert statuses == [503, 503, 200]

    def test_faults_come_before_authentication(self, http, server):
        """A queued fault answers even an unsigned request, like an outage in front of SMN."""
        server.fail_next()
        headers = {"Content-Type": "application/json"}
        assert post(http, server, sms_path(server), sms_body(), headers=headers).status_code == 503

    def test_faults_are_consumed_in_the_order_queued(self, http, server):
        """Different faults apply one after the other in the order they were queued."""
        server.malformed_next(status=502, body=b"<html>bad gateway</html>")
        server.close_next()
        server.fail_next(status=504)
        first = post(http, server, sms_path(server), sms_body())
        assert (first.status_code, first.content) == (502, b"<html>bad gateway</html>")
        assert first.headers["Content-Type"] == "text/html"
        assert "X-Request-Id" in first.headers
        with pytest.raises(requests.ConnectionError):
            post(http, server, sms_path(server), sms_body())
        assert post(http, server, sms_path(server), sms_body()).status_code == 504
        assert post(http, server, sms_path(server), sms_body()).status_code == 200
        assert [request.status for request in server.requests] == [502, None, 504, 200]

    def test_malformed_next_defaults(self, http, server):
        """malformed_next answers 200 with a body that is not JSON."""
        server.malformed_next()
        response = post(http, server, sms_path(server), sms_body())
        assert (response.status_code, response.content) == (200, b"not json")
        assert server.messages == []

    def test_close_next_reads_then_closes(self, http, server):
        """close_next reads the request and closes the connection: the client sees a connection error."""
        server.close_next()
        with pytest.raises(requests.ConnectionError):
            post(http, server, sms_path(server), sms_body())
        [request] = server.requests
        assert request.status is None and json.loads(request.body) == sms_body()

    def test_delay_holds_the_answer(self, http, server):
        """delay(s) makes the answer take at least s seconds."""
        server.delay(0.3, n=1)
        start = time.monotonic()
        assert post(http, server, sms_path(server), sms_body()).status_code == 200
        assert time.monotonic() - start >= 0.3

    def test_delay_n_counts_requests(self, http, server):
        """delay(s, n=1) delays only the next request: a client timeout hits the first, not the second."""
        server.delay(60, n=1)
        with pytest.raises(requests.Timeout):
            post(http, server, sms_path(server), sms_body(), timeout=0.3)
        assert post(http, server, sms_path(server), sms_body()).status_code == 200

    def test_delay_without_n_lasts_until_reset(self, http, server):
        """delay(s) without n delays every request until reset_faults()."""
        server.delay(60)
        for _ in range(2):
            with pytest.raises(requests.Timeout):
                post(http, server, sms_path(server), sms_body(), timeout=0.3)
        server.reset_faults()
        assert post(http, server, sms_path(server), sms_body()).status_code == 200

    def test_refused_number_gets_its_code_inside_a_200(self, http, server):
        """refuse(number) gives that number the chosen code while the others are delivered."""
        server.refuse(BOB, code="SMN.0057", message="over the hourly limit")
        response = post(http, server, sms_path(server), sms_body())
        assert response.status_code == 200
        alice, bob = response.json()["result"]
        assert "message_id" in alice
        assert bob == {"endpoint": BOB, "code": "SMN.0057", "message": "over the hourly limit"}
        assert server.messages[0].delivered == (ALICE,)
        assert server.messages[0].refused == ((BOB, "SMN.0057"),)

    def test_refuse_default_code(self, http, server):
        """refuse(number) without a code answers SMN.0160 for it."""
        server.refuse(ALICE)
        response = post(http, server, sms_path(server), sms_body())
        assert response.json()["result"][0]["code"] == "SMN.0160"

    def test_reset_faults_drops_everything_queued(self, http, server):
        """reset_faults() removes queued faults and refused numbers."""
        server.fail_next(3)
        server.close_next()
        server.refuse(ALICE)
        server.reset_faults()
        assert post(http, server, sms_path(server), sms_body()).status_code == 200
        assert server.messages[0].delivered == (ALICE, BOB)

    @pytest.mark.parametrize(
        "call",
        [
            lambda fake: fake.fail_next(0),
            lambda fake: fake.close_next(-1),
            lambda fake: fake.fail_next(shape="xml"),
            lambda fake: fake.delay(-1),
            lambda fake: fake.delay(1, n=0),
        ],
    )
    def test_nonsense_fault_is_refused_at_once(self, call):
        """A fault that cannot be applied raises ValueError when queued, not later on a request."""
        with pytest.raises(ValueError):
            call(FakeSMNServer())


class TestRecords:
    def test_wait_for_messages_wakes_when_a_message_arrives(self, server):
        """wait_for_messages returns as soon as another thread's message was accepted."""
        results: list[int] = []

        def send() -> None:
            with requests.Session() as session:
                results.append(post(session, server, sms_path(server), sms_body()).status_code)

        sender = threading.Thread(target=send)
        sender.start()
        messages = server.wait_for_messages(1, timeout=10)
        sender.join(10)
        assert len(messages) == 1 and results == [200]

    def test_wait_for_messages_timeout_says_what_happened(self, http, server):
        """On timeout wait_for_messages raises AssertionError naming the refused requests and codes."""
        post(http, server, sms_path(server), sms_body(), sk="wrong")
        post(http, server, sms_path(server), sms_body(message=""))
        with pytest.raises(AssertionError, match=r"0 message\(s\) from 2 request\(s\)") as info:
            server.wait_for_messages(1, timeout=0.05)
        assert "401 APIG.0301" in str(info.value) and "403 SMN.0009" in str(info.value)

    def test_clear_forgets_records_but_keeps_faults(self, http, server):
        """clear() empties messages and requests; queued faults still apply."""
        post(http, server, sms_path(server), sms_body())
        server.fail_next()
        server.clear()
        assert server.messages == [] and server.requests == []
        assert post(http, server, sms_path(server), sms_body()).status_code == 503

    def test_concurrent_senders_are_all_recorded(self, server):
        """Requests from many threads at once are all answered and recorded."""
        statuses: list[int] = []

        def send() -> None:
            with requests.Session() as session:
                statuses.append(post(session, server, sms_path(server), sms_body()).status_code)

        threads = [threading.Thread(target=send) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert statuses == [200] * 16
        assert len({message.request_id for message in server.wait_for_messages(16)}) == 16


class TestLifecycle:
    def test_stop_returns_quickly_while_a_request_is_delayed(self):
        """stop() does not wait for a delayed request: it closes that connection and returns."""
        errors: list[BaseException] = []
        fake = FakeSMNServer().start()
        fake.delay(60)

        def send() -> None:
            try:
                with requests.Session() as session:
                    post(session, fake, sms_path(fake), sms_body(), timeout=30)
            except requests.RequestException as exc:
                errors.append(exc)

        sender = threading.Thread(target=send)
        sender.start()
        fake.wait_for_requests(1)
        start = time.monotonic()
        fake.stop()
        assert time.monotonic() - start < 2.0
        sender.join(10)
        assert not sender.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)
        assert fake.requests[0].status is None

    def test_stop_leaves_no_threads(self, http):
        """After stop() none of the server's threads is alive, idle keep-alive connections included."""
        fake = FakeSMNServer().start()
        post(http, fake, sms_path(fake), sms_body())
        fake.stop()
        assert [t.name for t in threading.enumerate() if t.name.startswith("FakeSMNServer")] == []

    def test_stop_is_idempotent(self):
        """stop() twice, or on a server never started, does nothing."""
        FakeSMNServer().stop()
        fake = FakeSMNServer().start()
        fake.stop()
        fake.stop()

    def test_stopped_server_refuses_connections(self, http):
        """After stop() nothing listens at the url any more."""
        with FakeSMNServer() as fake:
            url = fake.url
        with pytest.raises(requests.ConnectionError):
            http.post(url + sms_path(fake), data=b"{}", timeout=5)

    def test_url_settings_and_repr(self):
        """url is on 127.0.0.1, settings() holds the client's keyword arguments, repr hides the sk."""
        with pytest.raises(RuntimeError):
            FakeSMNServer().url  # noqa: B018 (the property raises)
        with FakeSMNServer(project_id="1" * 32, ak="AKTEST", sk="sk-very-secret") as fake:
            assert fake.url.startswith("http://127.0.0.1:")
            assert fake.settings() == {
                "project_id": "1" * 32, "endpoint_url": fake.url, "ak": "AKTEST", "sk": "sk-very-secret",
            }  # fmt: skip
            assert "sk-very-secret" not in repr(fake) and fake.url in repr(fake)
            with pytest.raises(RuntimeError):
                fake.start()

    def test_keep_alive_connection_serves_several_requests(self, http, server):
        """One keep-alive connection can carry several requests, as a pooled client sends them."""
        for _ in range(3):
            assert post(http, server, sms_path(server), sms_body()).status_code == 200
        assert len(server.messages) == 3

    def test_import_does_not_import_requests(self, pytester):
        """smn_alert.testing imports without requests (it uses only the standard library)."""
        code = "import sys, smn_alert.testing; assert 'requests' not in sys.modules"
        assert pytester.run(__import__("sys").executable, "-c", code).ret == 0


class TestRecordingSender:
    def test_a_handler_pages_through_it_without_sockets(self):
        """SMNHandler(..., sender=RecordingSender()) runs the whole pipeline and records the page's text."""
        sender = RecordingSender([ALICE])
        handler = SMNHandler([ALICE], sign_id=SIGN_ID, sender=sender)
        log = logging.getLogger("app.orders")
        log.addHandler(handler)
        try:
            log.error("charge failed for order %s", "A-1042")
            assert handler.flush(5.0)
        finally:
            log.removeHandler(handler)
            handler.close()
        [text] = sender.texts
        assert "charge failed for order A-1042" in text
        assert handler.stats()["sent"] == 1
        assert sender.closed
        assert sender.threads and sender.threads[0] != threading.current_thread().name

    def test_scripted_outcomes_come_first_then_deliveries(self):
        """An error in outcomes is raised by the next send (nothing recorded); then texts are delivered."""
        sender = RecordingSender()
        sender.outcomes.append(SMNServerError("down", status=503))
        with pytest.raises(SMNServerError, match="down"):
            sender.send("first")
        delivery = sender.send("second")
        assert delivery.delivered == DEFAULT_RECIPIENTS
        assert sender.texts == ["second"]
        assert len(sender.threads) == 2

    def test_release_holds_sends_until_set(self):
        """release.clear() holds sends like a hung SMN; entered says one began; release.set() lets it go."""
        sender = RecordingSender()
        sender.release.clear()
        worker = threading.Thread(target=sender.send, args=("held",))
        worker.start()
        try:
            assert sender.entered.wait(5)
            assert sender.texts == []
        finally:
            sender.release.set()
            worker.join(5)
        assert sender.wait_for(1) == ["held"]


USER_TESTS = """
import json
from urllib.parse import urlsplit

import requests

from smn_alert import _signer as signer
servers = []


def send(server):
    settings = server.settings()
    url = f"{settings['endpoint_url']}/v2/{settings['project_id']}/notifications/sms"
    body = json.dumps({"endpoints": ["+8613800000000"], "message": "db down", "sign_id": "abc123"}).encode()
    headers = {"Content-Type": "application/json", "Host": urlsplit(url).netloc}
    headers["X-Sdk-Date"] = signer.sdk_date()
    headers["Authorization"] = signer.authorization_header(
        settings["ak"], settings["sk"], "POST", url, headers, body
    )
    with requests.Session() as session, session.post(url, data=body, headers=headers, timeout=5) as response:
        return response.status_code


def test_alert_reaches_the_fake(smn_server):
    assert send(smn_server) == 200
    [message] = smn_server.wait_for_messages(1)
    assert message.delivered == ("+8613800000000",)
    servers.append(smn_server)


def test_each_test_gets_a_fresh_server(smn_server):
    assert smn_server.messages == []
    assert servers and servers[0] is not smn_server
    assert "stopped" in repr(servers[0])


def test_faults_work_in_user_tests(smn_server):
    smn_server.fail_next(status=503)
    assert send(smn_server) == 503
"""


class TestPytestPlugin:
    def test_smn_server_fixture_in_a_users_tests(self, pytester):
        """A user's test gets a running server from the installed plugin, a fresh one per test."""
        pytester.makepyfile(test_user=USER_TESTS)
        result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", timeout=120)
        result.assert_outcomes(passed=3)

    def test_plugin_is_registered_by_entry_point(self, pytester):
        """The fixture is listed by --fixtures without any conftest, so it comes from the entry point."""
        pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
        result = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider", timeout=120)
        result.stdout.fnmatch_lines(["*smn_server*"])
