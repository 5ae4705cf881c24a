"""Property tests of the whole text path: whatever an application logs, the SMS is valid and fits.

``tests/test_text.py`` and ``tests/test_compose.py`` check ``sanitize``/``fit_to_length``/``compose`` on their
own; here any message goes through a real ``SMNHandler`` (emit, snapshot, dispatcher, pager, composer) to a
recording sender, and the application's logging call must return normally whatever the message is.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from smn_alert import SMNHandler

from .conftest import NUMBERS, RecordingSender

SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
FORBIDDEN = set("[]【】")
MAX_HUGE = 10**6
FAST = settings(max_examples=100, deadline=None)


class StrRaises:
    """An object whose ``__str__`` (and ``__repr__``) raise, as a buggy model class might."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        raise RuntimeError(f"cannot show {self.text!r}")

    __repr__ = __str__


class StrSubclassRaises(str):
    """A ``str`` subclass whose ``__str__`` raises: it passes ``isinstance(msg, str)`` checks."""

    def __str__(self) -> str:
        raise ValueError("no")


class ErrorWithBadStr(Exception):
    """An exception whose ``str()`` raises, logged with ``exc_info``."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


# Any code point (lone surrogates and control characters included), plus the hard cases for cutting.
TRICKY = st.sampled_from(
    ["\ud83d", "\ude00", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "[", "】", "【华为云】",
     "e\u0301", "👨‍👩‍👧", "\U0001f1fa\U0001f1f8", "%s", "%", "\n"]
)  # fmt: skip
ANY_TEXT = st.lists(st.one_of(st.characters(exclude_categories=()), TRICKY), max_size=60).map("".join)
HUGE_TEXT = st.builds(
    lambda chunk, size: (chunk * (size // len(chunk) + 1))[:size],
    ANY_TEXT.filter(bool),
    st.integers(1, MAX_HUGE),
)
MESSAGES = st.one_of(
    ANY_TEXT,
    HUGE_TEXT,
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=20).map(lambda chunk: chunk * 50_000),
    ANY_TEXT.map(StrRaises),
    ANY_TEXT.map(StrSubclassRaises),
    st.integers(),
    st.none(),
)
#: How the message is logged: as the message itself, as an argument, with bad arguments, with an exception.
STYLES = st.sampled_from(["msg", "arg", "bad-args", "exc", "bad-exc"])


def log(logger: logging.Logger, message: Any, style: str) -> None:
    """Log ``message`` in one of the ways applications do."""
    if style == "msg":
        logger.error(message)
    elif style == "arg":
        logger.error("payment failed: %s", message)
    elif style == "bad-args":
        logger.error("%d items and %s", message)  # noqa: PLE1206 - too few arguments is the point
    elif style == "exc":
        try:
            raise KeyError(message)
        except KeyError:
            logger.exception(message)
    else:
        try:
            raise ErrorWithBadStr(message)
        except ErrorWithBadStr:
            logger.exception("charge failed")


def page_texts(message: Any, style: str, max_length: int, prefix: str) -> list[str]:
    """Log ``message`` three times through a real handler; return the SMS texts it sent.

    Fails at once when ``emit`` took its error path (``handleError``): the alert was lost, and with
    ``logging.raiseExceptions`` on, a traceback was printed at the application.
    """
    sender = RecordingSender(NUMBERS)
    handler = SMNHandler(
        endpoints=NUMBERS, sign_id=SIGN_ID, sender=sender, max_length=max_length, prefix=prefix, budget=100
    )
    handle_errors: list[Any] = []
    handler.handleError = handle_errors.append  # type: ignore[method-assign, assignment]
    logger = logging.getLogger(f"app.props.{uuid.uuid4().hex[:8]}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        log(logger, message, style)  # the first page, alone
        assert handle_errors == [], "emit() failed: the alert is lost and logging printed a traceback"
        assert handler.stats()["received"] == 1
        sender.wait_for(1)
        log(logger, message, style)  # these two fold into a digest
        log(logger, message, style)
        assert handler.flush(5.0) is True
        assert handler.stats()["received"] == 3
    finally:
        logger.removeHandler(handler)
        handler.close()
    return list(sender.texts)


class TestAnyMessageThroughTheHandler:
    @FAST
    @given(
        message=MESSAGES,
        style=STYLES,
        max_length=st.integers(40, 490),
        prefix=st.one_of(st.just(""), st.just("checkout-api"), ANY_TEXT.map(lambda t: t[:40])),
    )
    def test_any_logged_message_becomes_a_valid_short_sms(
        self, message: Any, style: str, max_length: int, prefix: str
    ) -> None:
        """Any message (surrogates, controls, bytes, unprintable objects, 10^6 chars): a valid, short SMS."""
        texts = page_texts(message, style, max_length, prefix)
        assert len(texts) == 2, texts  # the first page and the digest of the next two
        for text in texts:
            assert text.strip(), "an empty SMS"
            text.encode("utf-8")  # raises on a lone surrogate
            assert len(text) <= max_length
            assert not FORBIDDEN & set(text), text

    def test_str_subclass_whose_str_raises_is_still_paged(self) -> None:
        """A ``str`` subclass whose ``__str__`` raises, as message or exception: paged, no logging error."""
        for style in ("msg", "exc"):
            texts = page_texts(StrSubclassRaises("order 42 failed"), style, 490, "svc")
            assert len(texts) == 2 and all(text.startswith("svc ERROR") for text in texts), texts
