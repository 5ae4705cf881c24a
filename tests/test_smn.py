"""Tests for smn_alert._smn: SMN's facts (codes, limits, signature and topic rules) and the field checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import smn_alert
from smn_alert import _smn
from smn_alert._smn import is_mainland_china, mask_number
from smn_alert.errors import SMNConfigError

PACKAGE = Path(smn_alert.__file__).parent
SIGN_ID = "6be340e91e5241e4b5d85837e6709104"


class TestOneHome:
    def test_no_other_module_states_an_smn_code(self) -> None:
        """SMN's and the gateway's codes are written in _smn alone (the fake keeps its own, by design)."""
        code = re.compile(r"""["'](?:SMN|APIGW?)\.[0-9]+["']""")
        stating = [
            path.name
            for path in sorted(PACKAGE.glob("*.py"))
            if path.name != "_smn.py" and code.search(path.read_text(encoding="utf-8"))
        ]
        assert stating == []

    def test_throttle_codes_are_too_many_requests_and_the_per_number_limit(self) -> None:
        """One table says which codes are throttling; the retry policy tells the per-number one apart."""
        assert _smn.PER_NUMBER_LIMIT_CODE == "SMN.0057"
        assert {*_smn.TOO_MANY_REQUESTS_CODES, "SMN.0057"} == _smn.THROTTLE_CODES
        assert {"APIG.0308", "APIGW.0308", "SMN.00362"} == _smn.TOO_MANY_REQUESTS_CODES
        assert not _smn.THROTTLE_CODES & _smn.AUTH_CODES


class TestSignature:
    @pytest.mark.parametrize("value", ["【XX商城】", " 【华为云】 ", "【A】", "【" + "字" * 16 + "】"])
    def test_approved_shapes_are_accepted_and_stripped(self, value: str) -> None:
        """A signature is 1 to 16 characters in 【】; spaces around it are dropped."""
        assert _smn.check_signature(value) == value.strip()

    @pytest.mark.parametrize(
        "value", ["XX商城", "【】", "【a b】", "【[x]】", "【" + "字" * 17 + "】", 5, None]
    )
    def test_other_shapes_are_refused_naming_the_field(self, value: object) -> None:
        """Anything else is refused with the field's name and the expected shape."""
        with pytest.raises(SMNConfigError, match=r"^signature=.*must be your approved signature in 【】"):
            _smn.check_signature(value)

    def test_with_the_flag_the_message_starts_with_its_signature(self) -> None:
        """With message_include_sign_flag "true", a message without 【sign】 first is refused."""
        flagged = _smn.sms_options(None, True, None, None)
        assert _smn.check_sms_message("【XX商城】db down", flagged) == "【XX商城】db down"
        with pytest.raises(SMNConfigError, match="must start with its signature"):
            _smn.check_sms_message("db down【XX商城】", flagged)
        assert _smn.check_sms_message("db down", _smn.sms_options(SIGN_ID, None, None, None)) == "db down"


class TestOptions:
    def test_only_the_fields_set_are_kept_in_smns_form(self) -> None:
        """sms_options keeps the fields given, the flag as SMN's string, in SmsBatchPublish's order."""
        assert _smn.sms_options(SIGN_ID, None, None, None) == {"sign_id": SIGN_ID}
        options = _smn.sms_options(None, "yes", "ticket-42", 1234)
        assert options == {
            "message_include_sign_flag": "true",
            "extend_code": "ticket-42",
            "extend_src_id": "1234",
        }

    @pytest.mark.parametrize(
        ("flag", "expected"),
        [(True, "true"), ("TRUE", "true"), ("yes", "true"), (1, "true"), (False, "false")],
    )
    def test_flag_spellings_become_smns_strings(self, flag: object, expected: str) -> None:
        """Every way a config says yes or no becomes SMN's "true" or "false"."""
        assert _smn.normalize_flag(flag) == expected

    def test_a_flag_that_is_no_boolean_is_refused(self) -> None:
        """A word that is not a boolean is refused, naming the field."""
        with pytest.raises(SMNConfigError, match="message_include_sign_flag='maybe': must be true or false"):
            _smn.normalize_flag("maybe")


class TestTopicMessage:
    @pytest.mark.parametrize("text", ["disk [db-1] full", "a ] b", "【签名】x", "x】"])
    def test_brackets_are_refused(self, text: str) -> None:
        """A topic refuses [ ] 【 】 in a message."""
        with pytest.raises(SMNConfigError, match="must not contain"):
            _smn.check_topic_message(text)

    def test_other_text_passes_as_any_message(self) -> None:
        """Without brackets, a topic message is checked like any SMS message."""
        assert _smn.check_topic_message("disk (db-1) full") == "disk (db-1) full"
        with pytest.raises(SMNConfigError, match="must not be empty"):
            _smn.check_topic_message("  ")


class TestNumbers:
    @pytest.mark.parametrize(
        ("number", "bare"), [("1867669-6912", "18676696912"), ("+86 138/0000", "+861380000")]
    )
    def test_bare_number_drops_the_separators_smn_accepts(self, number: str, bare: str) -> None:
        """SMN may answer a number without its separators; the bare form matches them up."""
        assert _smn.bare_number(number) == bare


class TestMainland:
    @pytest.mark.parametrize(
        ("number", "mainland"),
        [
            ("+8613800000000", True),
            ("008613800000000", True),
            ("13800000000", True),
            ("138 0000 0000", True),
            ("+85261234567", False),
            ("+14155550100", False),
            ("1867669-6912", True),  # the seed's example: 18676696912
        ],
    )
    def test_mainland_china_numbers_are_recognised(self, number: str, mainland: bool) -> None:
        """Mainland numbers (billed as UCS-2 whatever the text) are told apart from the others."""
        assert is_mainland_china(number) is mainland


class TestMasking:
    @pytest.mark.parametrize(
        ("number", "masked"),
        [
            ("+8613800000000", "+86138****0000"),
            ("13800000000", "138****0000"),
            ("1867669-6912", "1867****6912"),
            ("12345", "****5"),
            ("123", "****"),
            ("", "****"),
        ],
    )
    def test_mask_number(self, number: str, masked: str) -> None:
        """Numbers keep at most the first 6 and last 4 characters; short ones show almost nothing."""
        assert mask_number(number) == masked

    def test_mask_number_always_hides_at_least_four(self) -> None:
        """Whatever the length, at least four characters are hidden and at most 6 + 4 shown."""
        for length in range(40):
            number = "".join(str(i % 10) for i in range(length))
            masked = mask_number(number)
            shown = len(masked) - 4
            assert masked.count("****") >= 1
            assert shown <= min(10, max(0, length - 4))
