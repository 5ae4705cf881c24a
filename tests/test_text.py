"""Tests for smn_alert._text: redaction, sanitizing, fitting and segment counting of SMS text."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from smn_alert._secret_words import SECRET_SHAPES, SecretShape
from smn_alert._text import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_REDACTIONS,
    billed_segments,
    compile_redactions,
    count_segments,
    fit_to_length,
    redact,
    sanitize,
    sms_encoding,
)
from smn_alert.errors import SMNConfigError

ALL_BRACKETS = "[]【】〔〕［］"  # noqa: RUF001 - the lookalikes are the point
HUAWEI_SIGN = "【华为云】"

# Any code point, lone surrogates included, plus the characters that make cutting hard.
TRICKY = st.sampled_from(
    ["\u0301", "\u200d", "\ufe0f", "\U0001f3fd", "\U0001f1fa", "\U0001f1f8", "\ud83d", "\ude00", "\n", "\x00",
     "\x85", "\u2028", "\u202e", " ", "[", "】", "👨‍👩‍👧", "e\u0301", "数"]
)  # fmt: skip
ANY_TEXT = st.lists(st.one_of(st.characters(exclude_categories=()), TRICKY, st.text())).map("".join)
HUGE_TEXT = ANY_TEXT.filter(bool).map(lambda chunk: (chunk * (100_000 // len(chunk) + 1))[:100_000])
SOME_TEXT = st.one_of(ANY_TEXT, HUGE_TEXT)
QUICK = settings(max_examples=200, deadline=None)


def _with_check_digit(body: str) -> str:
    """``body`` and the digit that makes its Luhn sum valid."""
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char) * (1 if position % 2 else 2)
        total += value - 9 if value > 9 else value
    return body + str(-total % 10)


# Luhn-valid numbers with networks' lengths and first digits: Visa 13/16/19, Amex 15, Diners 14, 2-6 16-19.
CARDS = st.one_of(
    *(
        st.text("0123456789", min_size=size - len(lead) - 1, max_size=size - len(lead) - 1).map(
            lambda rest, lead=lead: _with_check_digit(lead + rest)
        )
        for lead, size in [("4", 13), ("36", 14), ("37", 15), ("4", 16), ("5", 16), ("6", 17), ("2", 19)]
    )
)


class TestCompileRedactions:
    def test_builtins_come_first_and_user_patterns_after(self):
        """compile_redactions() is the built-ins; user patterns are added after them."""
        patterns = compile_redactions([r"order-\d+"])
        assert patterns[: len(DEFAULT_REDACTIONS)] == DEFAULT_REDACTIONS
        assert redact("refund order-4711 password=x", patterns) == "refund *** password=***"

    def test_user_pattern_group_one_is_the_secret(self):
        """A user pattern with a group hides only the group, so the label stays readable."""
        patterns = compile_redactions([r"customer=(\w+)"])
        assert redact("lookup failed customer=alice42", patterns) == "lookup failed customer=***"

    def test_compiled_pattern_and_single_string_accepted(self):
        """A compiled pattern works, and one string is one pattern (not a list of characters)."""
        assert len(compile_redactions("abc")) == len(DEFAULT_REDACTIONS) + 1
        patterns = compile_redactions([re.compile(r"IBAN \w+", re.IGNORECASE)])
        assert redact("pay to iban DE89370400440532013000", patterns) == "pay to ***"

    @pytest.mark.parametrize(
        ("pattern", "kind"),
        [
            (r"hunter2=(\d+", "missing ), unterminated subpattern at position 8"),
            (r"(?P=hunter2)", "unknown group name at position 4"),
            (r"(?P<x>a)(?P<x>hunter2)", "redefinition of group name at position 12"),
            (r"\N{HUNTER TWO}", "undefined character name at position 0"),
            (r"[z-ahunter2]", "bad character range at position 1"),
            (r"\qhunter2", "bad escape at position 0"),
        ],
    )
    def test_bad_regex_named_by_place_never_echoed(self, pattern, kind):
        """A broken pattern is named by its place and re's kind of error; no part of it is echoed."""
        with pytest.raises(SMNConfigError) as info:
            compile_redactions([r"ok", pattern])
        assert str(info.value) == (
            f"redact_patterns[1]: not a valid regular expression ({kind}); "
            "the pattern is not shown, as it may be a secret"
        )
        assert isinstance(info.value, ValueError)
        assert info.value.__cause__ is None and info.value.__context__ is None  # re's text quotes it

    @pytest.mark.parametrize(
        ("bad", "said"),
        [(re.compile(rb"hunter2"), "a pattern must be a string, not a bytes pattern"),
         (b"hunter2", "a pattern must be a string, not bytes"),
         (42, "a pattern must be a string, not int")],
    )  # fmt: skip
    def test_non_text_patterns_refused_without_echo(self, bad, said):
        """Bytes patterns and non-strings are refused up front, not at the first page, and not quoted."""
        with pytest.raises(SMNConfigError) as info:
            compile_redactions([bad])
        assert str(info.value) == f"redact_patterns[0]: {said}"

    def test_pattern_matching_nothing_changes_nothing(self):
        """A user pattern that can match the empty string does not sprinkle *** everywhere."""
        assert redact("disk full", compile_redactions([r"x*"])) == "disk full"


@pytest.mark.parametrize("shape", SECRET_SHAPES, ids=[shape.name for shape in SECRET_SHAPES])
class TestBuiltinShapes:
    """Each row of the built-in table, both ways: what it must catch, and what must stay readable."""

    def test_caught(self, shape: SecretShape) -> None:
        """The row's own pattern hides its examples' secrets, and all the patterns together page the same."""
        own = DEFAULT_REDACTIONS[SECRET_SHAPES.index(shape)]
        assert shape.caught
        for logged, sent in shape.caught:
            assert redact(logged, [own]) == sent
            assert redact(logged) == sent

    def test_left_alone(self, shape: SecretShape) -> None:
        """Ordinary text that looks a little like this row's secret is not changed by any pattern."""
        assert shape.left_alone
        for ordinary in shape.left_alone:
            assert redact(ordinary) == ordinary


class TestRedact:
    def test_password_in_long_message_is_gone(self):
        """A password deep inside a 2,000-character message is still found."""
        message = "x" * 1000 + " connect(password='hunter2') " + "y" * 1000
        assert "hunter2" not in redact(message)

    @pytest.mark.parametrize(
        "nasty",
        [
            "password=" * 11_000, "Bearer " * 14_000, "http://u:" + "@" * 100_000, "Ab1" * 33_333,
            "-----BEGIN PRIVATE KEY-----" * 3_700, "-----BEGIN " * 9_000, "a:" * 50_000, "a:b@" * 25_000,
            "x:" + "x@" * 50_000 + "@", "--password " * 9_000, "auth=(" * 16_000, "auth={" * 16_000,
            "?key=" * 20_000, "key=" * 25_000, " key=" + "x" * 100_000, "4" * 100_000, "4111 " * 20_000,
            "ghp_" + "a" * 100_000, "xoxb-" + "-" * 100_000, "password='" + "\\'" * 50_000, "a:b@c " * 16_000,
            "(a:b" * 25_000, "password=" + "&a" * 50_000, "password=&" + "a" * 100_000,
        ],
        ids=lambda text: repr(text[:12]),
    )  # fmt: skip
    def test_pathological_input_stays_linear(self, nasty):
        """100,000 characters built to trip backtracking in each built-in pattern take well under a second."""
        started = time.perf_counter()
        redact(nasty)
        assert time.perf_counter() - started < 1.5  # quadratic would take minutes

    @QUICK
    @given(before=ANY_TEXT, after=ANY_TEXT, secret=st.text("abcdefXYZ0123456789!#%", min_size=8, max_size=20))
    def test_planted_password_never_survives(self, before, after, secret):
        """Whatever surrounds it, a password=... value never reaches the page."""
        assume(secret not in before + after)
        assert secret not in redact(f"{before} password={secret} {after}")

    @QUICK
    @given(before=ANY_TEXT, after=ANY_TEXT, card=CARDS, separator=st.sampled_from(["", " ", "-"]))
    def test_planted_card_never_survives(self, before, after, card, separator):
        """Whatever surrounds it, a card number (in one run or in groups of four) never reaches the page."""
        shown = separator.join(card[i : i + 4] for i in range(0, len(card), 4)) if len(card) == 16 else card
        assume(shown not in before + after)
        assert shown not in redact(f"{before} card {shown} {after}")

    @QUICK
    @given(before=ANY_TEXT, after=ANY_TEXT, flag=st.sampled_from(["--password", "--token", "--pw"]),
           secret=st.text("abcXYZ0123456789!#%?@:/", min_size=8, max_size=20))  # fmt: skip
    def test_planted_flag_and_url_password_never_survive(self, before, after, flag, secret):
        """Whatever surrounds them, ``--password X`` and ``user:X@host`` values never reach the page."""
        assume(secret not in before + after)
        assert secret not in redact(f"{before} {flag} {secret} {after}")
        password = secret.replace("@", "").replace(":", "").replace("/", "")
        assume(password and password not in before + after)
        assert password not in redact(f"{before} admin:{password}@db.internal {after}")


class TestSanitize:
    def test_brackets_become_parentheses(self):
        """Brackets a topic refuses, or that could fake a signature, become parentheses."""
        assert sanitize("[ERROR] 【华为云】 〔x〕 ［y］") == "(ERROR) (华为云) (x) (y)"  # noqa: RUF001

    def test_lone_surrogate_replaced_and_pair_joined(self):
        """Lone surrogates become U+FFFD; a pair written as two code points becomes its emoji."""
        assert sanitize("bad \ud800 byte") == "bad \ufffd byte"
        assert sanitize("ok \ud83d\ude00") == "ok 😀"

    def test_control_characters_become_spaces(self):
        """NUL, ESC, DEL and C1 controls cannot garble a phone's display."""
        assert sanitize("a\x00b\x1bc\x7fd\x85e\x9ff") == "a b c d e f"

    def test_whitespace_collapsed_one_newline_kept(self):
        """Runs of whitespace shrink to one space, or one newline if they held a line break."""
        assert sanitize("  a \t  b\r\n\n\n  c\u2028d  ") == "a b\nc\nd"

    def test_direction_overrides_removed(self):
        """Invisible right-to-left overrides cannot make a page read differently from what was logged."""
        assert sanitize("pay\u202eusd 01") == "payusd 01"

    @QUICK
    @given(SOME_TEXT)
    def test_any_text_becomes_safe_and_stable(self, text):
        """Any str comes out UTF-8 encodable, bracket-free and stripped; a second pass changes nothing."""
        clean = sanitize(text)
        clean.encode("utf-8")
        assert not set(clean) & set(ALL_BRACKETS)
        assert clean == clean.strip()
        assert sanitize(clean) == clean


class TestFitToLength:
    def test_short_text_unchanged(self):
        """Text within the limit is returned as is, without a marker."""
        assert fit_to_length("db timeout", 20) == "db timeout"

    def test_cut_at_word_boundary_with_marker(self):
        """A long line is cut at a word boundary and ends with the marker."""
        assert fit_to_length("db timeout after 30 seconds while reading", 20) == "db timeout after 30…"
        assert fit_to_length("db timeout after 30 seconds while reading", 20, "...") == "db timeout after..."

    def test_text_without_spaces_cut_on_character(self):
        """Chinese text has no spaces: it is cut at the last whole character."""
        fitted = fit_to_length("数据库连接超时" * 10, 20)
        assert fitted == ("数据库连接超时" * 3)[:19] + "…"

    @pytest.mark.parametrize(
        ("text", "limit", "expected"),
        [
            ("e\u0301e\u0301e\u0301e\u0301", 6, "e\u0301e\u0301…"),  # accent stays with its letter
            ("ok 👨\u200d👩\u200d👧 fam", 6, "ok…"),  # family emoji dropped whole
            ("thumbs👍🏽👍🏽👍🏽", 10, "thumbs👍🏽…"),  # skin tone stays with its thumb
            ("love❤\ufe0f❤\ufe0f❤\ufe0f", 8, "love❤\ufe0f…"),  # variation selector stays with its heart
            ("🇺🇸🇫🇷🇩🇪", 4, "🇺🇸…"),  # flags are pairs
            ("ab\ud83d\ude00cd", 4, "ab…"),  # surrogate pair written as code points
        ],
    )
    def test_never_splits_a_sequence(self, text, limit, expected):
        """A cut never leaves half an emoji, a lone surrogate or a letter without its accent."""
        assert fit_to_length(text, limit) == expected

    @pytest.mark.parametrize(("limit", "marker"), [(1, "…"), (3, "..."), (0, "")])
    def test_limit_too_small_for_marker(self, limit, marker):
        """A limit that leaves no room for a character and the marker is a ValueError."""
        with pytest.raises(ValueError, match="max_length"):
            fit_to_length("abcdef", limit, marker)

    @QUICK
    @given(SOME_TEXT, st.integers(20, DEFAULT_MAX_LENGTH), st.sampled_from(["…", "...", ""]))
    def test_any_text_fits(self, text, limit, marker):
        """Any sanitized text fits the limit, encodes as UTF-8, has no brackets and keeps its start."""
        clean = sanitize(text)
        fitted = fit_to_length(clean, limit, marker)
        assert len(fitted) <= limit
        fitted.encode("utf-8")
        assert not set(fitted) & set(ALL_BRACKETS)
        kept = fitted if fitted == clean else fitted[: len(fitted) - len(marker)]
        assert clean.startswith(kept)


class TestSegments:
    @pytest.mark.parametrize(
        ("text", "encoding"),
        [
            ("Disk full on db-1 @ 14:05, 95% used", "GSM-7"),
            ("Café Müller: {json} ~ €5 [x]", "GSM-7"),
            ("can’t connect", "UCS-2"),  # noqa: RUF001 - one curly quote
            ("cut here…", "UCS-2"),
            ("x2 × 3", "UCS-2"),  # noqa: RUF001
            ("数据库超时", "UCS-2"),
            ("tab\there", "UCS-2"),
        ],
    )
    def test_encoding(self, text, encoding):
        """One character outside GSM 03.38 makes the whole message UCS-2."""
        assert sms_encoding(text) == encoding

    @pytest.mark.parametrize(
        ("text", "segments"),
        [
            ("", 0),
            ("a" * 160, 1),
            ("a" * 161, 2),
            ("a" * 306, 2),
            ("a" * 307, 3),
            ("{" * 80, 1),
            ("{" * 81, 2),
            ("a" * 159 + "€", 2),
            ("数" * 70, 1),
            ("数" * 71, 2),
            ("数" * 134, 2),
            ("数" * 135, 3),
            ("😀" * 35, 1),
            ("😀" * 36, 2),
        ],
    )
    def test_count_segments(self, text, segments):
        """GSM-7 bills 160 then 153 per segment (extension characters count twice); UCS-2 70 then 67."""
        assert count_segments(text) == segments

    def test_chinese_alert_with_sign_bills_eight(self):
        """A 490-character Chinese alert with the 【华为云】 sign is 8 SMS per recipient."""
        assert billed_segments("数" * 490, signature=HUAWEI_SIGN) == 8

    def test_sign_forces_ucs2_for_english(self):
        """A Chinese sign turns a 150-character English alert from 1 SMS into 3."""
        alert = "E" * 150
        assert billed_segments(alert) == 1
        assert billed_segments(alert, signature=HUAWEI_SIGN) == 3

    def test_empty_message_costs_nothing(self):
        """Nothing to send costs nothing, signature or not."""
        assert billed_segments("", signature=HUAWEI_SIGN) == 0

    @QUICK
    @given(ANY_TEXT)
    def test_segments_never_fail(self, text):
        """Any text, lone surrogates included, gets a segment count; only empty text is free."""
        assert (count_segments(text) == 0) == (text == "")
