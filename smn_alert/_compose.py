"""Compose the SMS text of one page: a first alert, or a digest of many, with counts that add up."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, NamedTuple

from smn_alert._alert import Alert, level_band
from smn_alert._text import DEFAULT_MAX_LENGTH, DEFAULT_REDACTIONS, fit_to_length, redact, sanitize

#: Marker at the end of cut text. ``"..."`` is GSM-7; ``"…"`` would make an English page bill as UCS-2.
CUT_MARKER = "..."
#: Characters of description a digest line gets at least (less on very short pages); kinds that cannot
#: get them are folded into ``+N more alerts of K kinds``.
MIN_DESCRIPTION = 20
#: Shortest page :func:`compose` accepts (the composer's floor); below it no useful page can be written.
#: Users may not set ``max_length`` this low: ``_settings.MIN_MAX_LENGTH_SETTING`` adds room for a signature.
MIN_PAGE_LENGTH = 20
_MAX_LEVEL_CHARS = 12
_MAX_SINCE_CHARS = 16


def format_clock(timestamp: float) -> str:
    """Return the local ``HH:MM`` of a wall-clock timestamp (the default ``PageContext.time_format``)."""
    return time.strftime("%H:%M", time.localtime(timestamp))


def human_duration(seconds: float) -> str:
    """Round a duration for people: ``"40 s"``, ``"5 min"``, ``"2 h"``, ``"3 d"``."""
    for unit, size, below in (("s", 1, 60), ("min", 60, 60), ("h", 3600, 48)):
        if round(seconds / size) < below:
            return f"{round(seconds / size)} {unit}"
    return f"{round(seconds / 86400)} d"


@dataclass(frozen=True)
class GroupSummary:
    """Alerts of one kind (one fingerprint) in the period a page covers.

    Attributes:
        alert: The first alert of this kind in the period: its text is shown.
        count: How many alerts of this kind in the period (>= 1), including ones whose text was dropped.
        first_seen: Wall-clock time (``time.time()``) of the first.
        last_seen: Wall-clock time of the last.
    """

    alert: Alert
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class PageContext:
    """What a page says besides the alerts themselves, and how long it may be.

    Attributes:
        prefix: Service name, shown first.
        held_back: How many of the alerts on this page waited because the SMS budget was spent (they are
            already counted in their kinds; the footer says how many of them were late) ...
        held_since: ... since this wall-clock time.
        dropped: How many of the alerts on this page met a full buffer: they are counted in their kinds,
            but their own text was not kept.
        failed_before: Alerts in earlier pages that could not be delivered.
        max_length: Most characters in the page (at least :data:`MIN_PAGE_LENGTH`).
        redactions: Secret patterns, from :func:`~smn_alert._text.compile_redactions`; the built-ins by
            default, so nothing is sent unscrubbed by accident.
        time_format: Turns ``held_since`` into text (local ``HH:MM`` by default).
        processes: Processes whose alerts are on this page (a digest of the shared state) ...
        hosts: ... and the hosts they run on; above 1, a digest's head says ``from 12 processes on 3 hosts``.
    """

    prefix: str = ""
    held_back: int = 0
    held_since: float | None = None
    dropped: int = 0
    failed_before: int = 0
    max_length: int = DEFAULT_MAX_LENGTH
    redactions: tuple[re.Pattern[str], ...] = DEFAULT_REDACTIONS
    time_format: Callable[[float], str] = format_clock
    processes: int = 1
    hosts: int = 1

    def __post_init__(self) -> None:
        if self.max_length < MIN_PAGE_LENGTH:
            raise ValueError(
                f"max_length={self.max_length}: a page needs at least {MIN_PAGE_LENGTH} characters"
            )
        if self.processes < 1 or self.hosts < 1:
            raise ValueError(f"processes={self.processes}, hosts={self.hosts}: each must be at least 1")


class _Entry(NamedTuple):
    """One alert kind as a line: a head that is never cut, then description parts that are."""

    head: str  # level, count, time span
    joiner: str  # between head and description
    parts: tuple[str, ...]  # most important first; the last ones go first when room is short
    sep: str  # between parts

    @property
    def full(self) -> int:
        return len(self.sep.join(part for part in self.parts if part))


def compose(groups: Sequence[GroupSummary], context: PageContext) -> str:
    """Return the SMS text of one page: redacted, sanitized and at most ``context.max_length`` characters.

    One alert seen once reads ``svc CRITICAL app.db: db timeout | TimeoutError: read timed out | db.py:42 in
    query``. Anything more is a digest, one line per kind, highest level band (:func:`level_band`) then
    largest count first: ``svc ERROR x1,234 in 5 min: app.db: db timeout (TimeoutError)``; kinds that do
    not fit become ``+N more alerts of K kinds``. Footers for held-back, dropped and undelivered alerts
    are never cut.
    When alerts of several processes are on a digest (``context.processes``), its first head says so:
    ``svc ERROR x2,160 in 40 s from 12 processes on 3 hosts: ...`` (``from 3 processes`` on one host).
    Every count shown (kinds, ``+N more``) adds up to the counts given; held-back and dropped alerts are
    among the kinds ("N of these held back", "N of these only counted" say how many); an alert shown
    without ``x`` counts once. Returns ``""`` when there is nothing at all to say.
    """
    choices = _footer_choices(context)
    if not groups and not choices[0]:
        return ""
    ordered = sorted(
        groups, key=lambda group: (-level_band(group.alert.levelno), -group.count, group.first_seen)
    )
    # rest[i]: alerts in the kinds from the i-th on, what "+N more" says when i kinds are shown.
    rest = [*reversed([0, *itertools.accumulate(group.count for group in reversed(ordered))])]
    entries = _entries(ordered, context)
    prefix = fit_to_length(_flat(sanitize(context.prefix)), context.max_length // 4, "")
    # An alert on the page matters more than the wording of footers: shorten footers before hiding all kinds.
    for at_least, footers in [(1, footers) for footers in choices] + [(0, footers) for footers in choices]:
        text = _layout(rest, entries, prefix, footers, context.max_length, at_least=at_least)
        if text is not None:
            return text
    return _last_resort(rest[0] if groups else None, prefix, choices[-1], context.max_length)


# --- the pieces of a page -------------------------------------------------------------------------------
def _flat(text: str) -> str:
    """One line: each piece of a page is a line of its own."""
    return text.replace("\n", " ")


def _clean(value: object, redactions: tuple[re.Pattern[str], ...]) -> str:
    """Log-derived text made safe to send: redacted, then sanitized, on one line."""
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = "<unprintable>"
    return _flat(sanitize(redact(text, redactions)))


def _level(alert: Alert) -> str:
    name = _flat(sanitize(str(alert.levelname))) or f"Level {alert.levelno}"
    return fit_to_length(name, _MAX_LEVEL_CHARS, "")


def _joined(first: str, second: str, sep: str) -> str:
    return f"{first}{sep}{second}" if first and second else first or second


def _entries(groups: Sequence[GroupSummary], context: PageContext) -> list[_Entry]:
    """Build the lines of the kinds that could be shown at all; the text of the others is never cleaned."""
    single = len(groups) == 1 and groups[0].count == 1
    least, cost = _least(context.max_length), 0
    entries: list[_Entry] = []
    for group in groups:
        entries.append(_entry(group, single, context.redactions, "" if entries else _fleet(context)))
        cost += len(entries[-1].head) + len(entries[-1].joiner) + min(entries[-1].full, least)
        if cost > context.max_length:
            break
    return entries


def _fleet(context: PageContext) -> str:
    """`` from 12 processes on 3 hosts`` when more than one process contributed, else ``""``."""
    if context.processes <= 1:
        return ""
    hosts = f" on {context.hosts:,} hosts" if context.hosts > 1 else ""
    return f" from {context.processes:,} processes{hosts}"


def _entry(
    group: GroupSummary, single: bool, redactions: tuple[re.Pattern[str], ...], fleet: str = ""
) -> _Entry:
    """Build the line for one kind: the full first-page form, or the compact digest form.

    ``fleet`` (the first digest line only) says how many processes and hosts the page counts.
    """
    alert = group.alert
    said = _joined(_clean(alert.logger, redactions), _clean(alert.message, redactions), ": ")
    exc_type = _clean(str(alert.exc_type).rsplit(".", 1)[-1], redactions)
    if single:
        exception = _joined(exc_type, _clean(alert.exc_value, redactions), ": ")
        return _Entry(_level(alert), " ", (said, exception, _clean(alert.exc_where, redactions)), " | ")
    head = f"{_level(alert)} x{group.count:,}{_span(group)}{fleet}"
    return _Entry(head, ": ", (said, f"({exc_type})" if exc_type else ""), " ")


def _span(group: GroupSummary) -> str:
    seconds = group.last_seen - group.first_seen
    if group.count < 2 or not math.isfinite(seconds) or round(seconds) < 1:
        return ""
    return f" in {human_duration(seconds)}"


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _tail(rest: Sequence[int], shown: int) -> str:
    """``+N more alerts of K kinds`` for the kinds not shown, or ``N alerts of K kinds`` if none is.

    ``rest[i]`` is how many alerts the kinds from the ``i``-th on hold (``rest[-1]`` is 0).
    """
    alerts, kinds = rest[shown], len(rest) - 1 - shown
    if not kinds:
        return ""
    more = f"+{alerts:,} more" if shown else f"{alerts:,}"
    return f"{more} {_plural(alerts, 'alert')} of {kinds:,} {_plural(kinds, 'kind')}"


def _since(context: PageContext) -> str:
    if context.held_since is None:
        return ""
    try:  # a user's formatter, or a timestamp localtime() refuses, must not lose the page
        shown = _flat(sanitize(str(context.time_format(context.held_since))))
    except Exception:
        return ""
    return f" since {fit_to_length(shown, _MAX_SINCE_CHARS, '')}" if shown else ""


def _footer_choices(context: PageContext) -> list[list[str]]:
    """Footers in full, then shorter, then fewer: they describe alerts the kinds above already count."""
    held, dropped, failed = context.held_back, context.dropped, context.failed_before
    full = [
        *([f"{held:,} of these held back{_since(context)} (SMS budget)"] if held > 0 else []),
        *([f"{dropped:,} of these only counted (buffer full)"] if dropped > 0 else []),
        *([f"{failed:,} undelivered earlier"] if failed > 0 else []),
    ]
    short = [
        *([f"{held:,} of these held back"] if held > 0 else []),
        *([f"{dropped:,} only counted"] if dropped > 0 else []),
    ]
    return [full, [*short, *([f"{failed:,} undelivered"] if failed > 0 else [])], short, []]


# --- fitting ---------------------------------------------------------------------------------------------
def _assemble(prefix: str, lines: Sequence[str]) -> str:
    lines = [line for line in lines if line]
    if prefix:
        lines = [f"{prefix} {lines[0]}", *lines[1:]] if lines else [prefix]
    return "\n".join(lines)


def _shares(lengths: Sequence[int], floors: Sequence[int], room: int) -> list[int]:
    """Characters each text gets in ``room``: its floor, then an equal share, never more than its length.

    The floors must fit (callers check); the largest common share that fits is found by bisection.
    """

    def total(share: int) -> int:
        return sum(min(length, max(floor, share)) for length, floor in zip(lengths, floors))

    low, high = 0, max(lengths, default=0)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if total(middle) <= room else (low, middle - 1)
    return [min(length, max(floor, low)) for length, floor in zip(lengths, floors)]


def _cut(text: str, room: int) -> str:
    return text if len(text) <= room else fit_to_length(text, room, CUT_MARKER)


def _fit_parts(parts: Sequence[str], sep: str, room: int) -> str:
    """Join ``parts`` in at most ``room`` characters: cut the longest first, drop the last ones if need be."""
    kept = [part for part in parts if part]
    while kept:
        shares = _shares([len(part) for part in kept], [0] * len(kept), room - len(sep) * (len(kept) - 1))
        if all(share == len(part) or share > len(CUT_MARKER) for part, share in zip(kept, shares)):
            return sep.join(_cut(part, share) for part, share in zip(kept, shares))
        kept.pop()
    return ""


def _least(limit: int) -> int:
    """Characters of description a shown line gets at least: fewer on short pages."""
    return min(MIN_DESCRIPTION, max(len(CUT_MARKER) + 1, limit // 5))


def _floors(entries: Sequence[_Entry], limit: int) -> list[int]:
    """Give each line its least description; the headline gets enough for a notification preview."""
    least = _least(limit)
    return [
        min(entry.full, max(least, limit // 6) if index == 0 else least)
        for index, entry in enumerate(entries)
    ]


def _layout(
    rest: Sequence[int],
    entries: Sequence[_Entry],
    prefix: str,
    footers: Sequence[str],
    limit: int,
    *,
    at_least: int,
) -> str | None:
    """Lay out the page with as many kinds as fit (at least ``at_least``); ``None`` if it cannot be done."""
    floors = _floors(entries, limit)
    best: tuple[int, int] | None = None  # (kinds shown, characters left for their descriptions)
    heads = minimum = 0
    for shown in range(len(entries) + 1):
        if shown:
            heads += len(entries[shown - 1].head) + len(entries[shown - 1].joiner)
            minimum += floors[shown - 1]
        if heads + minimum > limit:
            break
        fixed = [_tail(rest, shown), *footers]
        count = shown + sum(1 for line in fixed if line)
        cost = heads + sum(map(len, fixed)) + max(count - 1, 0) + (len(prefix) + bool(count) if prefix else 0)
        if shown >= at_least and cost + minimum <= limit:
            best = (shown, limit - cost)
    if best is None:
        return None
    shown, room = best
    shares = _shares([entry.full for entry in entries[:shown]], floors[:shown], room)
    lines = [_line(entry, share) for entry, share in zip(entries, shares)]
    text = _assemble(prefix, [*lines, _tail(rest, shown), *footers])
    return text if len(text) <= limit else None


def _line(entry: _Entry, room: int) -> str:
    description = _fit_parts(entry.parts, entry.sep, room)
    return f"{entry.head}{entry.joiner}{description}" if description else entry.head


def _last_resort(total: int | None, prefix: str, footers: Sequence[str], limit: int) -> str:
    """For pages too short for the layouts: the bare counts, losing the prefix before any count."""
    lines = [f"{total:,} {_plural(total, 'alert')}" if total is not None else "", *footers]
    for shown_prefix in (prefix, ""):
        text = _assemble(shown_prefix, lines)
        if len(text) <= limit:
            return text
    kept: list[str] = []  # whole lines while they fit: a number cut in half would be a wrong number
    for line in lines:
        if line and len(_assemble("", [*kept, line])) <= limit:
            kept.append(line)
    return _assemble("", kept)
