"""Tests for smn_alert._responses: per-number results, error mapping and Retry-After, without HTTP."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from smn_alert._responses import (
    MAX_ANSWER_BYTES,
    MISSING_CODE,
    EndpointResult,
    SmsBatchResult,
    chunk_results,
    decode_body,
    error_from_response,
    oversized_answer,
    parse_answer,
    parse_retry_after,
)
from smn_alert.errors import (
    SMNAuthError,
    SMNError,
    SMNRequestError,
    SMNServerError,
    SMNThrottledError,
)

FIXED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


class TestResults:
    def test_results_value_objects(self) -> None:
        """ok, delivered and refused are derived from the per-number results."""
        good, bad = EndpointResult("1", message_id="m"), EndpointResult("2", code="SMN.0160")
        batch = SmsBatchResult((good, bad), ("r",))
        assert (good.ok, bad.ok, batch.ok) == (True, False, False)
        assert (batch.delivered, batch.refused) == (("1",), (bad,))
        assert SmsBatchResult((good,), ()).ok


class TestParseAnswer:
    def test_request_id_from_body_wins_over_header(self) -> None:
        """The body's request_id is reported; X-Request-Id (any case) only when the body has none."""
        headers = {"x-request-id": "h-1"}
        assert parse_answer(200, headers, b'{"request_id":"b-1"}') == ({"request_id": "b-1"}, "b-1")
        assert parse_answer(200, headers, b'{"request_id":""}') == ({"request_id": ""}, "h-1")

    @pytest.mark.parametrize("body", [b"[1]", b"<html>ok</html>", b"", b"\xff"])
    def test_body_that_is_not_an_object_is_a_server_error(self, body: bytes) -> None:
        """A 2xx whose body is not a JSON object raises a retryable SMNServerError with the header id."""
        with pytest.raises(SMNServerError, match="malformed answer") as info:
            parse_answer(200, {"X-Request-Id": "h-2"}, body)
        assert (info.value.status, info.value.request_id, info.value.retryable) == (200, "h-2", True)


class TestChunkResults:
    def test_one_result_per_number_sent_in_order(self) -> None:
        """Each number sent gets its own result in the order sent; an unmentioned one is marked missing."""
        data = {"result": [{"endpoint": "2", "code": "SMN.0160"}, {"endpoint": "1", "message_id": "m"}]}
        results = chunk_results(["1", "2", "3"], data, "r")
        assert [(r.endpoint, r.message_id, r.code) for r in results] == [
            ("1", "m", None),
            ("2", None, "SMN.0160"),
            ("3", None, MISSING_CODE),
        ]

    def test_answer_without_result_list_is_a_server_error(self) -> None:
        """An answer with no result list raises SMNServerError carrying the request id."""
        with pytest.raises(SMNServerError, match="no result list") as info:
            chunk_results(["1"], {"result": "nope"}, "r-3")
        assert info.value.request_id == "r-3"


class TestErrorFromResponse:
    def test_smn_body_shape(self) -> None:
        """SMN's {request_id, code, message} fills code, message and request id."""
        body = b'{"request_id":"r-1","code":"SMN.0160","message":"invalid endpoint"}'
        error = error_from_response(400, {}, body)
        assert type(error) is SMNRequestError
        assert (error.status, error.code, error.request_id, error.message) == (
            400,
            "SMN.0160",
            "r-1",
            "invalid endpoint",
        )

    def test_gateway_body_shape(self) -> None:
        """The gateway's {error_code, error_msg, request_id} is read the same way."""
        body = b'{"error_code":"APIG.0301","error_msg":"Incorrect IAM authentication","request_id":"g-1"}'
        error = error_from_response(401, {}, body)
        assert type(error) is SMNAuthError
        assert (error.code, error.request_id, error.message) == (
            "APIG.0301",
            "g-1",
            "Incorrect IAM authentication",
        )
        assert not error.retryable

    def test_request_id_from_header(self) -> None:
        """Without a request id in the body, X-Request-Id (any case) is used."""
        error = error_from_response(500, {"x-request-id": "h-1"}, b"oops")
        assert error.request_id == "h-1"

    @pytest.mark.parametrize(
        ("status", "code", "kind"),
        [
            (401, None, SMNAuthError),
            (401, "APIGW.0301", SMNAuthError),
            (403, "SMN.0057", SMNThrottledError),
            (403, "SMN.0009", SMNRequestError),
            (403, "SMN.0001", SMNAuthError),
            (403, "SMN.0070", SMNAuthError),
            (403, "SMN.0228", SMNAuthError),
            (403, None, SMNAuthError),
            (429, None, SMNThrottledError),
            (429, "APIG.0308", SMNThrottledError),
            (400, "APIG.0301", SMNAuthError),
            (400, "APIGW.0308", SMNThrottledError),
            (400, "SMN.00362", SMNThrottledError),
            (400, "SMN.0160", SMNRequestError),
            (400, "SMN.0227", SMNRequestError),
            (404, "SMN.0084", SMNRequestError),
            (413, None, SMNRequestError),
            (408, None, SMNServerError),
            (500, "SMN.0016", SMNServerError),
            (502, None, SMNServerError),
            (503, "SMN.0089", SMNServerError),
            (504, None, SMNServerError),
        ],
    )
    def test_status_and_code_choose_the_class(
        self, status: int, code: str | None, kind: type[SMNError]
    ) -> None:
        """Each status/code pair maps to the error class that says whether to retry."""
        body = json.dumps({"code": code, "message": "m"} if code else {"message": "m"}).encode()
        error = error_from_response(status, {}, body)
        assert type(error) is kind
        assert error.retryable == (kind in (SMNThrottledError, SMNServerError))

    def test_retry_after_seconds(self) -> None:
        """Retry-After in seconds becomes retry_after."""
        error = error_from_response(429, {"Retry-After": "7"}, b"{}", now=FIXED)
        assert error.retry_after == 7.0

    def test_retry_after_http_date(self) -> None:
        """Retry-After as an HTTP date becomes the seconds until then."""
        when = format_datetime(FIXED + timedelta(seconds=90), usegmt=True)
        error = error_from_response(503, {"retry-after": when}, b"{}", now=FIXED)
        assert error.retry_after == 90.0

    def test_html_error_page(self) -> None:
        """An HTML page keeps the status class, has no code, and a short readable message."""
        page = (
            b"<html><head><title>502 Bad Gateway</title><style>body{color:red}</style>"
            b"<script>var secret=1;</script></head><body><h1>Bad\r\nGateway</h1>" + b"<p>padding</p>" * 200
        )
        error = error_from_response(502, {}, page)
        assert type(error) is SMNServerError
        assert error.code is None
        assert error.message.startswith("HTTP 502 Bad Gateway: 502 Bad Gateway Bad Gateway padding")
        assert len(error.message) <= 200
        assert not any(mark in error.message for mark in ("<", "color", "secret", "\r", "\n"))

    @pytest.mark.parametrize("body", [b"[1, 2]", b'{"unexpected": true}', b"", b"\xff\xfe garbage"])
    def test_wrong_shape_keeps_status_class(self, body: bytes) -> None:
        """A body that is not an error object still maps by status, with code None."""
        error = error_from_response(403, {}, body)
        assert type(error) is SMNAuthError
        assert error.code is None
        assert error.message.startswith("HTTP 403 Forbidden")

    def test_server_message_is_cleaned_and_cut(self) -> None:
        """A long server message with control characters is flattened and cut."""
        body = json.dumps({"code": "SMN.0001", "message": "a\nb\x00c" + "x" * 500}).encode()
        error = error_from_response(400, {}, body)
        assert error.message.startswith("a b c")
        assert len(error.message) <= 200


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("120", 120.0),
            (" 3 ", 3.0),
            ("1.5", 1.5),
            ("0", 0.0),
            (format_datetime(FIXED + timedelta(minutes=2), usegmt=True), 120.0),
            (format_datetime(FIXED - timedelta(minutes=2), usegmt=True), 0.0),
            ("Mon, 06 May 2024 07:09:09 GMT", 60.0),
            ("soon", None),
            ("-5", None),
            ("", None),
            (None, None),
        ],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        """Seconds and HTTP dates give seconds >= 0; anything else gives None."""
        assert parse_retry_after(value, FIXED) == expected

    def test_naive_now_is_taken_as_utc(self) -> None:
        """A naive clock value is read as UTC rather than failing."""
        assert parse_retry_after("Mon, 06 May 2024 07:09:09 GMT", FIXED.replace(tzinfo=None)) == 60.0


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # as RFC 9110 means it: zlib-wrapped
    " Deflate ": lambda data: zlib.compress(data)[2:-4],  # raw deflate, as some servers send it
}


class TestAnswerSize:
    def test_oversized_answer_is_a_retryable_malformed_answer_whatever_the_status(self) -> None:
        """Over the cap is not SMN speaking: a 401 or 403 that large must not pause paging as auth would."""
        for status in (200, 401, 403, 502):
            error = oversized_answer(status, {"x-request-id": "r-9"})
            assert type(error) is SMNServerError and error.retryable
            assert (error.status, error.request_id) == (status, "r-9")
            assert "malformed answer from SMN: over 1 MiB" in str(error)

    @pytest.mark.parametrize("coding", list(COMPRESSORS))
    def test_gzip_and_deflate_are_undone(self, coding: str) -> None:
        body = b'{"request_id": "r"}'
        assert decode_body(COMPRESSORS[coding](body), coding) == body

    @pytest.mark.parametrize("coding", [None, "", "identity", "br", "zstd"])
    def test_other_codings_are_left_as_they_are(self, coding: str | None) -> None:
        assert decode_body(b"\x1f\x8bnot really", coding) == b"\x1f\x8bnot really"

    def test_a_body_that_does_not_decompress_is_left_as_it_is(self) -> None:
        assert decode_body(b"not gzip at all", "gzip") == b"not gzip at all"

    def test_decompression_stops_one_byte_past_the_cap(self) -> None:
        """16 KB that would inflate to 16 MiB gives MAX_ANSWER_BYTES + 1 bytes: enough to say "too large"."""
        bomb = gzip.compress(b"x" * (16 << 20))
        assert len(decode_body(bomb, "gzip")) == MAX_ANSWER_BYTES + 1
