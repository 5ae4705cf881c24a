"""Tests for smn_alert._compose: the SMS text of a page, first alerts and digests, and their counts."""

from __future__ import annotations

import logging
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smn_alert._alert import Alert, level_band
from smn_alert._compose import GroupSummary, PageContext, compose, format_clock, human_duration
from smn_alert._text import DEFAULT_MAX_LENGTH, compile_redactions, sms_encoding

ALL_BRACKETS = set("[]【】〔〕［］")  # noqa: RUF001 - the lookalikes are the point
LEVELS = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20}
T0 = 1_700_000_000.0
QUICK = settings(max_examples=200, deadline=None)


def make_alert(
    message: str = "db timeout after 30s",
    *,
    level: str = "ERROR",
    logger: str = "app.db",
    exc_type: str = "",
    exc_value: str = "",
    exc_where: str = "",
) -> Alert:
    return Alert(LEVELS[level], level, logger, message, message, exc_type, exc_value, exc_where, T0)


def group(alert: Alert, count: int = 1, span: float = 0.0) -> GroupSummary:
    return GroupSummary(alert, count, T0, T0 + span)


def shown_counts(text: str, prefix: str = "") -> int:
    """Add up every count a person reads in a page: kinds and "+N more" (held back, dropped are in them)."""
    level = "|".join(LEVELS)
    total = 0
    lines = text.split("\n")
    lines[0] = lines[0].removeprefix(f"{prefix} ") if prefix else lines[0]
    for line in lines:
        for pattern in (
            rf"^(?:{level}) x([\d,]+)(?: in [^:]+| from [^:]+)?(?::|$)",
            r"^\+([\d,]+) more alerts? of [\d,]+ kinds?$",
            r"^([\d,]+) alerts?(?: of [\d,]+ kinds?)?$",
        ):
            found = re.match(pattern, line)
            if found:
                total += int(found.group(1).replace(",", ""))
                break
        else:
            if re.match(rf"^(?:{level}) (?!x\d)", line):  # a first page: one alert, no "x"
                total += 1
    return total


class TestFirstPage:
    def test_full_line_most_important_first(self):
        """One new alert shows prefix, level, logger, message, exception and where it was raised."""
        alert = make_alert(
            level="CRITICAL",
            exc_type="requests.exceptions.ReadTimeout",
            exc_value="read timed out",
            exc_where="db.py:42 in query",
        )
        text = compose([group(alert)], PageContext(prefix="checkout"))
        assert text == (
            "checkout CRITICAL app.db: db timeout after 30s | ReadTimeout: read timed out | db.py:42 in query"
        )

    def test_empty_parts_omitted(self):
        """Without a prefix or exception the page has no stray separators."""
        assert compose([group(make_alert("disk full"))], PageContext()) == "ERROR app.db: disk full"

    def test_from_a_real_log_record(self):
        """A logged exception reaches the page as type, value and the innermost frame."""
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            record = logging.LogRecord(
                "billing", logging.ERROR, __file__, 1, "charge %s failed", ("c-1",), None
            )
            record.exc_info = __import__("sys").exc_info()
        text = compose([group(Alert.from_record(record))], PageContext())
        assert text.startswith("ERROR billing: charge c-1 failed | ZeroDivisionError: division by zero | ")
        assert "test_compose.py:" in text

    def test_long_message_keeps_exception_visible(self):
        """A huge message is cut so the exception and the frame still fit."""
        alert = make_alert("q" * 2000, exc_type="KeyError", exc_value="'id'", exc_where="api.py:7 in h")
        text = compose([group(alert)], PageContext())
        assert len(text) <= DEFAULT_MAX_LENGTH
        assert text.endswith("q... | KeyError: 'id' | api.py:7 in h")


class TestDigest:
    def digest(self, **context: object) -> str:
        groups = [
            group(make_alert("cache miss", level="WARNING", logger="app.cache"), 7, 3),
            group(make_alert(exc_type="socket.TimeoutError", exc_value="x"), 1234, 300),
            group(make_alert("bad request", logger="app.api", exc_type="KeyError"), 3, 40),
            group(make_alert("card declined", level="CRITICAL", logger="app.pay"), 1),
        ]
        return compose(groups, PageContext(**context))  # type: ignore[arg-type]

    def test_ordered_by_level_then_count(self):
        """The worst level comes first, then the kind seen most often."""
        assert self.digest(prefix="checkout").split("\n") == [
            "checkout CRITICAL x1: app.pay: card declined",
            "ERROR x1,234 in 5 min: app.db: db timeout after 30s (TimeoutError)",
            "ERROR x3 in 40 s: app.api: bad request (KeyError)",
            "WARNING x7 in 3 s: app.cache: cache miss",
        ]

    def test_custom_levels_are_ordered_by_their_band_then_count(self):
        """Level 55 is CRITICAL's band and level 45 ERROR's: within a band the biggest kind comes first."""
        groups = [
            group(Alert(55, "Level 55", "app.core", "odd", "odd", created=T0), 1),
            group(Alert(45, "Level 45", "app.q", "slow", "slow", created=T0), 2),
            group(make_alert("disk full", level="CRITICAL", logger="app.disk"), 900),
            group(make_alert(), 30),
        ]
        assert compose(groups, PageContext(prefix="svc")).split("\n") == [
            "svc CRITICAL x900: app.disk: disk full",
            "Level 55 x1: app.core: odd",
            "ERROR x30: app.db: db timeout after 30s",
            "Level 45 x2: app.q: slow",
        ]

    @pytest.mark.parametrize(
        ("levelno", "band"), [(-1, 0), (5, 0), (10, 10), (29, 20), (30, 30), (45, 40), (50, 50), (99, 50)]
    )
    def test_level_band(self, levelno: int, band: int) -> None:
        """The standard level at or below a level; NOTSET below DEBUG."""
        assert level_band(levelno) == band

    def test_one_kind_seen_many_times_is_a_digest(self):
        """One kind seen twice shows its count, not the first-page form."""
        assert compose([group(make_alert(), 2, 90)], PageContext()) == (
            "ERROR x2 in 2 min: app.db: db timeout after 30s"
        )

    @pytest.mark.parametrize(
        ("seconds", "shown"),
        [(40, "40 s"), (59.6, "1 min"), (300, "5 min"), (3599, "1 h"), (7200, "2 h"), (3 * 86400, "3 d")],
    )
    def test_spans_rounded_for_people(self, seconds, shown):
        """Time spans read like a person would say them."""
        assert human_duration(seconds) == shown

    def test_english_digest_bills_as_gsm7(self):
        """Everything we add is GSM-7, so an English digest, even cut, bills at the cheaper rate."""
        groups = [group(make_alert("w" * 300, logger=f"app.m{i}"), i + 2, 60) for i in range(30)]
        text = compose(
            groups, PageContext(prefix="svc", held_back=4, held_since=T0, dropped=2, failed_before=1)
        )
        assert "..." in text
        assert sms_encoding(text) == "GSM-7"


class TestFleetWording:
    """A digest of the shared state says how many processes (and hosts) its counts come from."""

    def test_many_processes_on_many_hosts(self):
        """The issue's wording: ``ERROR x2,160 in 40 s from 12 processes on 3 hosts: ...``."""
        text = compose([group(make_alert(), 2160, 40)], PageContext(prefix="svc", processes=12, hosts=3))
        assert text == "svc ERROR x2,160 in 40 s from 12 processes on 3 hosts: app.db: db timeout after 30s"
        assert shown_counts(text, "svc") == 2160

    def test_many_processes_on_one_host(self):
        """One host: the hosts are not mentioned; no time span: the note follows the count."""
        text = compose([group(make_alert(), 5)], PageContext(processes=3))
        assert text == "ERROR x5 from 3 processes: app.db: db timeout after 30s"
        assert shown_counts(text) == 5

    def test_only_the_first_line_says_it(self):
        """The note is about the whole page: it is said once, on the first (never cut) head."""
        groups = [group(make_alert(), 30, 60), group(make_alert("cache miss", level="WARNING"), 4)]
        lines = compose(groups, PageContext(processes=1200, hosts=30)).split("\n")
        assert lines == [
            "ERROR x30 in 1 min from 1,200 processes on 30 hosts: app.db: db timeout after 30s",
            "WARNING x4: app.db: cache miss",
        ]

    @pytest.mark.parametrize("limit", [20, 40, 70, 160, DEFAULT_MAX_LENGTH])
    def test_one_process_is_byte_identical(self, limit: int) -> None:
        """With one process (the default, and every per-process page) the text is exactly as before."""
        groups = [group(make_alert("x" * 80, logger=f"app.m{i}"), i + 2, 60) for i in range(6)]
        for hosts in (1, 7):
            assert compose(groups, PageContext(prefix="svc", max_length=limit, hosts=hosts)) == compose(
                groups, PageContext(prefix="svc", max_length=limit)
            )
        assert compose(groups[:1], PageContext(processes=1)) == ("ERROR x2 in 1 min: app.m0: " + "x" * 80)

    def test_a_single_alert_keeps_the_first_page_form(self):
        """One alert seen once is a first page: there is no digest head to carry the note."""
        assert compose([group(make_alert())], PageContext(processes=2)) == (
            "ERROR app.db: db timeout after 30s"
        )

    @pytest.mark.parametrize(("processes", "hosts"), [(0, 1), (1, 0), (-3, 2)])
    def test_counts_below_one_are_refused(self, processes: int, hosts: int) -> None:
        with pytest.raises(ValueError, match="processes"):
            PageContext(processes=processes, hosts=hosts)


class TestFitting:
    def test_password_in_long_message_gone_and_page_fits(self):
        """A password in a 2,000-character message never reaches the phone, and the page is <= 490."""
        message = "connect failed " + "z" * 980 + " password=hunter2 " + "z" * 1000
        for count in (1, 5):
            text = compose([group(make_alert(message), count)], PageContext())
            assert "hunter2" not in text
            assert len(text) <= DEFAULT_MAX_LENGTH

    def test_secret_in_any_field_is_redacted(self):
        """Logger, message, exception value and frame are all scrubbed."""
        alert = make_alert(
            "token=t0k3n",
            logger="svc.secret=abc",
            exc_type="AuthError",
            exc_value="Authorization: Bearer xyz",
            exc_where="auth.py:1 in login",
        )
        text = compose([group(alert)], PageContext())
        assert text == "ERROR svc.secret=***: token=*** | AuthError: Authorization: *** | auth.py:1 in login"

    def test_brackets_from_log_text_never_appear(self):
        """Brackets in any log-derived text or the prefix become parentheses."""
        alert = make_alert("[db] 【华为云】 ［x］", logger="app[1]", exc_type="E", exc_value="〔v〕")  # noqa: RUF001
        for groups in ([group(alert)], [group(alert, 3)]):
            text = compose(groups, PageContext(prefix="[prod]"))
            assert not set(text) & ALL_BRACKETS
            assert "(prod)" in text

    def test_footers_survive_huge_message(self):
        """Held-back, dropped and undelivered footers are whole lines even after a 2,000-character message."""
        context = PageContext(
            held_back=12, held_since=T0, dropped=3, failed_before=2, time_format=lambda _: "14:05"
        )
        text = compose([group(make_alert("m" * 2000))], context)
        assert len(text) <= DEFAULT_MAX_LENGTH
        assert text.split("\n")[1:] == [
            "12 of these held back since 14:05 (SMS budget)",
            "3 of these only counted (buffer full)",
            "2 undelivered earlier",
        ]

    def test_kinds_that_do_not_fit_are_summarized(self):
        """Kinds without room become "+N more alerts of K kinds", after the shown ones and before footers."""
        groups = [group(make_alert(f"error {i} " + "x" * 400, logger=f"m{i}"), 10 + i) for i in range(40)]
        text = compose(groups, PageContext(dropped=5))
        lines = text.split("\n")
        assert re.fullmatch(r"\+[\d,]+ more alerts of \d+ kinds", lines[-2])
        assert lines[-1] == "5 of these only counted (buffer full)"
        assert lines[0].startswith("ERROR x49: m39: error 39 ")
        assert shown_counts(text) == sum(g.count for g in groups)

    def test_short_page_respected(self):
        """A page limited to one SMS (160) still leads with the worst alert and keeps its footers."""
        groups = [group(make_alert("y" * 500, level=level), 2) for level in ("WARNING", "CRITICAL")]
        text = compose(groups, PageContext(max_length=160, held_back=3))
        assert len(text) <= 160
        assert text.startswith("CRITICAL x2: app.db: yyy")
        assert text.endswith("\n3 of these held back") or "3 of these held back (SMS budget)" in text
        assert shown_counts(text) == 4

    def test_tiny_page_keeps_counts_over_prose(self):
        """When little fits, footers (which only describe counted alerts) go before the kind and its count."""
        context = PageContext(prefix="checkout", max_length=35, held_back=5, dropped=9)
        text = compose([group(make_alert(), 1234)], context)
        assert text == "checkout ERROR x1,234: app.db: d..."


class TestPageContext:
    def test_too_short_limit_refused(self):
        """A page limit too short for any useful text is refused when the context is made."""
        with pytest.raises(ValueError, match="max_length"):
            PageContext(max_length=19)

    def test_secrets_scrubbed_by_default(self):
        """Without configuration the built-in redaction still applies."""
        assert compose([group(make_alert("password=hunter2"))], PageContext()) == "ERROR app.db: password=***"

    def test_user_redaction_applied(self):
        """A user's own pattern (with the built-ins) hides their own kind of secret."""
        context = PageContext(redactions=compile_redactions([r"card (\d{4})"]))
        assert (
            compose([group(make_alert("card 4111 declined"))], context) == "ERROR app.db: card *** declined"
        )

    def test_held_since_in_local_time(self):
        """The default time format is the local HH:MM the budget ran out."""
        since = time.mktime((2024, 5, 1, 14, 5, 0, 0, 0, -1))
        assert format_clock(since) == "14:05"
        text = compose([group(make_alert())], PageContext(held_back=3, held_since=since))
        assert text.endswith("\n3 of these held back since 14:05 (SMS budget)")

    def test_broken_time_format_does_not_lose_page(self):
        """A time formatter that raises only drops the time from the footer."""

        def broken(_: float) -> str:
            raise OverflowError

        text = compose([group(make_alert())], PageContext(held_back=3, held_since=1e300, time_format=broken))
        assert text.endswith("\n3 of these held back (SMS budget)")

    def test_footers_alone(self):
        """A page with no alerts of its own can still report what was held back; nothing at all is ''."""
        assert compose([], PageContext(prefix="svc", failed_before=5)) == "svc 5 undelivered earlier"
        assert compose([], PageContext(prefix="svc")) == ""


# --- properties --------------------------------------------------------------------------------------------
ANY_TEXT = st.lists(
    st.one_of(
        st.characters(exclude_categories=()), st.sampled_from(["[", "】", "\u0301", "\ud83d", "\n", "😀"])
    )
).map("".join)
LONG_TEXT = st.one_of(ANY_TEXT, ANY_TEXT.filter(bool).map(lambda chunk: (chunk * 3000)[:100_000]))
ANY_MESSAGE = st.one_of(
    st.text(), ANY_TEXT, st.integers(), st.none(), st.lists(st.text(), max_size=3), st.builds(object)
)


@st.composite
def any_alert(draw: st.DrawFn) -> Alert:
    """An alert as logging makes it (any message object), or built directly with any text in every field."""
    if draw(st.booleans()):
        record = logging.LogRecord("app", logging.ERROR, "f.py", 1, draw(ANY_MESSAGE), None, None)
        return Alert.from_record(record)
    level = draw(st.sampled_from(sorted(LEVELS)))
    fields = [draw(st.one_of(ANY_TEXT, st.sampled_from(["", "app.db"]))) for _ in range(4)]
    return Alert(
        LEVELS[level], draw(st.one_of(st.just(level), ANY_TEXT)), fields[0], "t", draw(LONG_TEXT), *fields[1:]
    )


GROUPS = st.lists(
    st.builds(
        GroupSummary,
        alert=any_alert(),
        count=st.integers(1, 10**6),
        first_seen=st.floats(0, 2e9),
        last_seen=st.one_of(st.floats(0, 2e9), st.just(float("nan"))),
    ),
    max_size=8,
)
COUNTS = st.integers(0, 10**6)
#: Up to 8 kinds at any level, with any text and counts, spread over ten minutes.
GROUP_LISTS = st.lists(
    st.builds(
        lambda level, message, count: group(make_alert(message, level=level), count, 600.0),
        st.sampled_from(sorted(LEVELS)),
        ANY_TEXT,
        st.integers(1, 10**6),
    ),
    max_size=8,
)


class TestComposeProperties:
    @QUICK
    @given(GROUPS, st.integers(20, DEFAULT_MAX_LENGTH), ANY_TEXT, COUNTS, COUNTS, COUNTS)
    def test_any_alerts_fit_without_brackets(self, groups, limit, prefix, held, dropped, failed):
        """Any alerts, any prefix, any limit: the page fits, encodes as UTF-8, has no brackets."""
        context = PageContext(prefix, held, T0, dropped, failed, max_length=limit)
        text = compose(groups, context)
        assert len(text) <= limit
        text.encode("utf-8")
        assert not set(text) & ALL_BRACKETS

    @QUICK
    @given(
        GROUP_LISTS,
        st.integers(100, DEFAULT_MAX_LENGTH),
        st.sampled_from(["", "svc", "checkout-api"]),
        COUNTS,
        COUNTS,
        COUNTS,
    )
    def test_counts_add_up(self, groups, limit, prefix, held, dropped, failed):
        """Every count on the page adds up to the alerts given (held back and dropped are among them)."""
        held, dropped = min(held, sum(g.count for g in groups)), min(dropped, sum(g.count for g in groups))
        text = compose(groups, PageContext(prefix, held, T0, dropped, failed, max_length=limit))
        assert shown_counts(text, prefix) == sum(g.count for g in groups)

    @QUICK
    @given(
        GROUP_LISTS,
        st.integers(20, DEFAULT_MAX_LENGTH),
        st.integers(1, 10**5),
        st.integers(1, 10**4),
    )
    def test_fleet_digests_fit_and_add_up(self, groups, limit, processes, hosts):
        """A digest of many processes still fits any limit, and its counts still add up when laid out."""
        text = compose(groups, PageContext("svc", max_length=limit, processes=processes, hosts=hosts))
        assert len(text) <= limit
        if limit >= 100:
            assert shown_counts(text, "svc") == sum(g.count for g in groups)


class TestStructlogValues:
    @pytest.mark.parametrize(
        ("value", "secret"),
        [
            ("x y z", "x y z"),
            ("host=\"db\" password='s3cr3t'", "s3cr3t"),
            ({"password": "it's a secret"}, "it's a secret"),
        ],
    )
    def test_secrets_in_structlog_values_are_hidden_whole(self, value: object, secret: str) -> None:
        """A structlog value with spaces or quotes is quoted so that redaction hides all of a secret."""
        alert = Alert.from_event_dict(
            {"event": "login failed", "password": value, "dsn": value}, "app", 40, "ERROR"
        )
        text = compose([group(alert)], PageContext())
        assert "login failed" in text
        assert all(part not in text for part in secret.split() if len(part) > 2)

    def test_secret_named_keys_are_masked_by_name(self) -> None:
        """Values of keys named like secrets never reach the text, whatever their shape."""
        event = {
            "event": "call failed",
            "apiKey": "plainword",
            "db_password": 42,
            "aws_sk": "x",
            "task": "build",
        }
        alert = Alert.from_event_dict(event, "app", 40, "ERROR")
        assert alert.message == "call failed apiKey=*** db_password=*** aws_sk=*** task=build"
