"""Tests for smn_alert.signer: Huawei's published vector and each canonicalization rule."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from smn_alert import signer

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


class TestPublishedVector:
    def test_signature_matches_huawei_guide(self) -> None:
        """Huawei's published example request signs to the published signature."""
        digest, signed = signer.signature(VECTOR_SK, "GET", VECTOR_URL, VECTOR_HEADERS, b"")
        assert (digest, signed) == (VECTOR_SIGNATURE, "content-type;host;x-sdk-date")

    def test_authorization_header_format(self) -> None:
        """The Authorization header has the gateway's exact layout."""
        value = signer.authorization_header(VECTOR_AK, VECTOR_SK, "GET", VECTOR_URL, VECTOR_HEADERS, b"")
        assert value == (
            f"SDK-HMAC-SHA256 Access={VECTOR_AK}, SignedHeaders=content-type;host;x-sdk-date, "
            f"Signature={VECTOR_SIGNATURE}"
        )

    def test_canonical_request_layout(self) -> None:
        """The canonical request has a blank line before SignedHeaders and ends with the body hash."""
        request, _ = signer.canonical_request("GET", VECTOR_URL, VECTOR_HEADERS, b"")
        assert request == (
            "GET\n"
            "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
            "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
            "content-type:application/json\n"
            "host:service.region.example.com\n"
            "x-sdk-date:20191115T033655Z\n"
            "\n"
            "content-type;host;x-sdk-date\n" + hashlib.sha256(b"").hexdigest()
        )

    def test_any_change_changes_the_signature(self) -> None:
        """Changing the body, the method or a signed header gives another signature."""
        base = signer.signature(VECTOR_SK, "GET", VECTOR_URL, VECTOR_HEADERS, b"")[0]
        other_host = {**VECTOR_HEADERS, "Host": "other.example.com"}
        variants = [
            signer.signature(VECTOR_SK, "GET", VECTOR_URL, VECTOR_HEADERS, b"x")[0],
            signer.signature(VECTOR_SK, "POST", VECTOR_URL, VECTOR_HEADERS, b"")[0],
            signer.signature(VECTOR_SK, "GET", VECTOR_URL, other_host, b"")[0],
            signer.signature(VECTOR_SK + "x", "GET", VECTOR_URL, VECTOR_HEADERS, b"")[0],
        ]
        assert base not in variants


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
        ],
    )
    def test_segments_are_reencoded(self, path: str, expected: str) -> None:
        """Each segment is decoded then encoded with only '~' safe, so ':' is signed as %3A."""
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
