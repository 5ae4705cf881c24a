"""Tests for smn_alert._signer: Huawei's published vector, the official signer's requests, each rule."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from smn_alert import _signer as signer

#: Requests signed by Huawei's official Python signer; the repo's copy of ../shared/vectors/.
OFFICIAL_FILE = Path(__file__).parent / "data" / "signer-official.json"
SHARED_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "signer-official.json"
OFFICIAL = json.loads(OFFICIAL_FILE.read_text(encoding="utf-8"))
CASES = OFFICIAL["cases"]

VECTOR_URL = (
    "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
    "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"
)
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "Host": "service.region.example.com",
    "X-Sdk-Date": "20191115T033655Z",
}
VECTOR_AK = "QTWAOYTTINDUT2QVKYUC"
VECTOR_SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VECTOR_SIGNATURE = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe"
HEADERS = {"Host": "h.example.com", "X-Sdk-Date": "20240506T070809Z"}


def uri_of(path: str) -> str:
    return signer.canonical_request("GET", path, HEADERS, b"")[0].split("\n")[1]


def query_of(url: str) -> str:
    return signer.canonical_request("GET", url, HEADERS, b"")[0].split("\n")[2]


def hash_of(headers: dict[str, str], body: bytes, signed: list[str] | None = None) -> str:
    return signer.canonical_request("POST", "/x", {**HEADERS, **headers}, body, signed)[0].split("\n")[-1]


def url_of(case: dict[str, Any]) -> str:
    return "https://" + case["host"] + case["uri_sent"]


def official_headers(case: dict[str, Any]) -> dict[str, str]:
    """The headers the official signer sent: the case's, Host, and any other it lists as signed."""
    lines = case["canonical_request"].split("\n")
    listed = dict(line.partition(":")[::2] for line in lines[3 : lines.index("", 3)])
    given = {**case["headers"], "Host": case["host"]}
    return {**given, **{name: listed[name] for name in listed.keys() - {name.lower() for name in given}}}


def authorization_of(case: dict[str, Any], url: str) -> str:
    headers, body = official_headers(case), case["body"].encode()
    return signer.authorization_header(OFFICIAL["ak"], OFFICIAL["sk"], case["method"], url, headers, body)


class TestOfficialSigner:
    def test_repo_copy_is_the_shared_file(self) -> None:
        """tests/data holds the very file in ../shared/vectors, so the suite needs no ../shared."""
        if not SHARED_FILE.exists():
            pytest.skip(f"{SHARED_FILE} is not beside this checkout")
        assert OFFICIAL_FILE.read_bytes() == SHARED_FILE.read_bytes()

    def test_file_holds_the_fourteen_cases(self) -> None:
        """All 14 cases are there, each with every field the tests read."""
        assert len(CASES) == 14 and len({case["name"] for case in CASES}) == 14
        fields = {"name", "method", "host", "path", "query", "headers", "body", "canonical_request"}
        assert all(fields | {"authorization", "uri_sent"} <= case.keys() for case in CASES)

    @pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
    def test_canonical_request_is_the_official_one(self, case: dict[str, Any]) -> None:
        """The canonical request of each official case is the official signer's, byte for byte."""
        headers, body = official_headers(case), case["body"].encode()
        assert (
            signer.canonical_request(case["method"], url_of(case), headers, body)[0]
            == case["canonical_request"]
        )

    @pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
    def test_authorization_is_the_official_one(self, case: dict[str, Any]) -> None:
        """The Authorization header of each official case is the official signer's."""
        assert authorization_of(case, url_of(case)) == case["authorization"]

    @pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
    def test_query_in_the_callers_order_signs_the_same(self, case: dict[str, Any]) -> None:
        """The path as handed to the official signer and its query in the caller's order sign the same."""
        query = "&".join(f"{quote(key, safe='~')}={quote(value, safe='~')}" for key, value in case["query"])
        url = "https://" + case["host"] + case["path"] + (f"?{query}" if query else "")
        assert authorization_of(case, url) == case["authorization"]

    @pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
    def test_sign_sends_what_the_official_signer_sends(self, case: dict[str, Any]) -> None:
        """sign() adds what the official signer adds (X-Sdk-Content-Sha256 for a form) and signs it all."""
        given = {**case["headers"], "Host": case["host"]}
        sent = signer.sign(
            OFFICIAL["ak"], OFFICIAL["sk"], case["method"], url_of(case), given, case["body"].encode()
        )
        expected = {**official_headers(case), "Authorization": case["authorization"]}
        assert {name.lower(): value for name, value in sent.items()} == {
            name.lower(): value for name, value in expected.items()
        }


class TestCanonicalUri:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/v2/p/notifications/sms", "/v2/p/notifications/sms/"),
            ("/v2/p/notifications/sms/", "/v2/p/notifications/sms/"),
            ("", "/"),
            ("/", "/"),
        ],
    )
    def test_trailing_slash_is_added_once(self, path: str, expected: str) -> None:
        """The signed URI always ends in exactly one '/', though the request path does not."""
        assert uri_of(path) == expected

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/topics/urn%3Asmn%3Ax/publish", "/topics/urn%3Asmn%3Ax/publish/"),
            ("/topics/urn:smn:x/publish", "/topics/urn%3Asmn%3Ax/publish/"),
            ("/a%20b/c~d", "/a%20b/c~d/"),
            ("/%7Euser", "/~user/"),
            ("/告警", "/%E5%91%8A%E8%AD%A6/"),
        ],
    )
    def test_segments_are_reencoded(self, path: str, expected: str) -> None:
        """Each segment is decoded then encoded with only '~' safe, so ':' is signed as %3A."""
        assert uri_of(path) == expected

    @pytest.mark.parametrize(
        ("path", "expected"),
        [("/topics/a%2Fb", "/topics/a/b/"), ("/a%2F%2Fb", "/a//b/"), ("/a%2f", "/a/")],
    )
    def test_encoded_slash_splits_the_segment(self, path: str, expected: str) -> None:
        """The path is decoded as a whole before splitting, so %2F inside a segment is signed as '/'."""
        assert uri_of(path) == expected


class TestCanonicalQuery:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("/x?b=2&a=1", "a=1&b=2"),
            ("/x?a=2&a=1", "a=1&a=2"),
            ("/x?q=a b", "q=a%20b"),
            ("/x?q=%2F~", "q=%2F~"),
            ("/x?flag", "flag="),
            ("/x", ""),
        ],
    )
    def test_pairs_are_sorted_and_encoded(self, url: str, expected: str) -> None:
        """Query pairs are sorted by key then value and encoded with only '~' safe."""
        assert query_of(url) == expected

    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("/x?a%C3%A9=2&a~=1&a=3", "a=3&a~=1&a%C3%A9=2"),
            ("/x?aé=2&a%7E=1", "a~=1&a%C3%A9=2"),
            ("/x?b=1&a%2Bz=2&a+y=3", "a%2By=3&a%2Bz=2&b=1"),
        ],
    )
    def test_pairs_are_sorted_as_decoded_text(self, url: str, expected: str) -> None:
        """Pairs sort by their decoded text, not their encoding: '~' (U+007E) comes before 'é' (%C3%A9)."""
        assert query_of(url) == expected


class TestBodyHash:
    @pytest.mark.parametrize(
        "content_type",
        ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
    )
    def test_non_json_body_is_sent_unsigned(self, content_type: str) -> None:
        """A body that is not JSON gets X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD, like the official signer."""
        assert signer.content_headers({"content-TYPE": content_type}) == {
            "X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"
        }

    @pytest.mark.parametrize("headers", [{"Content-Type": "application/json;charset=UTF-8"}, {}])
    def test_json_or_no_content_type_is_hashed(self, headers: dict[str, str]) -> None:
        """JSON, or no Content-Type at all, is signed by the body's hash: no extra header."""
        assert signer.content_headers(headers) == {}

    def test_signed_content_sha256_stands_in_for_the_body(self) -> None:
        """A signed X-Sdk-Content-Sha256 is the hash line, so the body itself is not signed."""
        declared = {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
        assert hash_of(declared, b"a=1") == "UNSIGNED-PAYLOAD"
        assert signer.signature("sk", "POST", "/x", {**HEADERS, **declared}, b"a=1") == signer.signature(
            "sk", "POST", "/x", {**HEADERS, **declared}, b"a=2"
        )

    def test_unsigned_content_sha256_does_not_unsign_the_body(self) -> None:
        """An X-Sdk-Content-Sha256 left out of the signed headers cannot stop the body being signed."""
        declared = {"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}
        assert hash_of(declared, b"a=1", ["host", "x-sdk-date"]) == hashlib.sha256(b"a=1").hexdigest()

    def test_empty_body_hashes_as_empty(self) -> None:
        """With no body the hash line is the empty string's hash, whatever X-Sdk-Content-Sha256 says."""
        assert hash_of({"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"}, b"") == hashlib.sha256(b"").hexdigest()


class TestSign:
    def test_adds_host_from_the_url(self) -> None:
        """Without a Host header, sign() adds the URL's host and signs it."""
        sent = signer.sign(
            "ak", "sk", "GET", "https://h.example.com/x", {"X-Sdk-Date": "20240506T070809Z"}, b""
        )
        assert sent["Host"] == "h.example.com"
        assert "SignedHeaders=host;x-sdk-date," in sent["Authorization"]

    @pytest.mark.parametrize(
        ("url", "headers", "needed"),
        [("https://h/x", {"Host": "h"}, "X-Sdk-Date"), ("/x", {"X-Sdk-Date": "20240506T070809Z"}, "Host")],
    )
    def test_refuses_what_it_cannot_sign(self, url: str, headers: dict[str, str], needed: str) -> None:
        """A missing X-Sdk-Date, or no host anywhere, is a ValueError naming it."""
        with pytest.raises(ValueError, match=needed):
            signer.sign("ak", "sk", "GET", url, headers, b"")


class TestHeaders:
    def test_header_names_are_lowercased_and_values_stripped(self) -> None:
        """Header case and surrounding whitespace do not change the signature."""
        messy = {"HOST": "  h.example.com\t", "x-sdk-DATE": "20240506T070809Z"}
        assert signer.signature("sk", "GET", "/x", messy, b"") == signer.signature(
            "sk", "GET", "/x", HEADERS, b""
        )

    def test_only_named_headers_are_signed(self) -> None:
        """Headers outside signed_headers are left out of the signature."""
        extra = {**HEADERS, "User-Agent": "anything"}
        signed = signer.signature("sk", "GET", "/x", extra, b"", ["Host", "X-Sdk-Date"])
        assert signed == signer.signature("sk", "GET", "/x", HEADERS, b"")
        assert signed[1] == "host;x-sdk-date"

    def test_signed_names_are_sorted(self) -> None:
        """SignedHeaders lists the lowercase names in sorted order."""
        headers = {"X-Sdk-Date": "d", "Content-Type": "t", "Host": "h", "X-Project-Id": "p"}
        assert (
            signer.canonical_request("POST", "/", headers, b"")[1]
            == "content-type;host;x-project-id;x-sdk-date"
        )


class TestParseAuthorization:
    def test_round_trip(self) -> None:
        """A header made by authorization_header parses back into its parts."""
        value = signer.authorization_header(VECTOR_AK, VECTOR_SK, "GET", VECTOR_URL, VECTOR_HEADERS, b"")
        assert signer.parse_authorization(value) == {
            "Access": VECTOR_AK,
            "SignedHeaders": "content-type;host;x-sdk-date",
            "Signature": VECTOR_SIGNATURE,
        }

    def test_tolerates_spacing(self) -> None:
        """Extra spaces around the parts are accepted."""
        parsed = signer.parse_authorization("  SDK-HMAC-SHA256 Access=A ,SignedHeaders=host,  Signature=s ")
        assert parsed == {"Access": "A", "SignedHeaders": "host", "Signature": "s"}

    @pytest.mark.parametrize(
        "value",
        [
            "Bearer abc",
            "SDK-HMAC-SHA1 Access=A, SignedHeaders=host, Signature=s",
            "SDK-HMAC-SHA256 Access=A",
            "",
        ],
    )
    def test_rejects_other_headers(self, value: str) -> None:
        """Another scheme or a header missing a part gives None."""
        assert signer.parse_authorization(value) is None


class TestSdkDate:
    def test_formats_in_utc(self) -> None:
        """A time in another zone is written as UTC in X-Sdk-Date's format."""
        moment = datetime(2024, 5, 6, 15, 8, 9, tzinfo=timezone(timedelta(hours=8)))
        assert signer.sdk_date(moment) == "20240506T070809Z"

    def test_defaults_to_now(self) -> None:
        """Without an argument the current UTC time is used."""
        before = datetime.now(timezone.utc).replace(microsecond=0)
        stamp = datetime.strptime(signer.sdk_date(), signer.DATE_FORMAT).replace(tzinfo=timezone.utc)
        assert before <= stamp <= datetime.now(timezone.utc)
