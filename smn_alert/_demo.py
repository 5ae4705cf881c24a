"""``smn-alert demo``: an incident replayed against FakeSMNServer, and what each on-call phone received.

Act 1 replays one process's incident on a replayed clock, paging alone (``shared_state="process"``). Act 2
is real: worker processes forked from this one log the same incident and share one SQLite file, so the
phones get one first page and one digest counting every worker's alerts.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TextIO

from smn_alert._smn import is_mainland_china, mask_number
from smn_alert._text import billed_segments, sms_encoding

if TYPE_CHECKING:
    from smn_alert.testing import FakeSMNServer, ReceivedMessage

#: The demo's on-call numbers; FakeSMNServer plays SMN, so no real phone is involved.
DEMO_NUMBERS = ("+8613800000001", "+8613900000002")
#: Short window and small budget, so the demo shows folding and the budget within minutes of replay.
DEMO_SETTINGS: dict[str, Any] = {"prefix": "shop", "window": 60, "budget": 3, "budget_period": 600}
#: Act 1 pages from this one process alone, on a replayed clock (a shared state keeps the real one).
_ALONE = {**DEMO_SETTINGS, "shared_state": "process"}
#: Act 2: worker processes, errors each logs over _FLEET_SECONDS (2 kinds), and the most it may take.
FLEET_WORKERS = 4
_FLEET_ERRORS = 50
_FLEET_SECONDS = 1.5
_FLEET_DEADLINE = 20.0
_COUNT = re.compile(r"^(?:\S+ )?[A-Z]+ x([\d,]+)")  # a digest line's count: "shop ERROR x199 in 2 s ..."

_WAIT = 5.0  # seconds the demo waits for any one page; the whole demo takes well under one
_SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
_HOLD_AT = 150.0  # second of the replay at which the SMS budget runs out (see _Replay)
_BURST = 4 * 9 * (60 + 25 + 4)  # errors _burst() logs: threads x rounds x (three kinds)
_COUNTERS = {
    "received": "alerts taken in (records at ERROR or above)",
    "sent": "alerts shown as a line of their own in a delivered SMS",
    "folded": 'alerts counted in a digest line ("x2,160") instead of an SMS of their own',
    "suppressed": "alerts that waited for the SMS budget, then went out as a count",
    "dropped": "alerts whose text was dropped because the buffer was full (still counted)",
    "failed": "alerts whose SMS could not be delivered",
    "pending": "alerts not resolved yet",
    "handed": "alerts handed to the digest of the processes sharing state (act 2)",
    "pages": "SMS texts sent (each to every number)",
    "segments": "billed SMS segments, summed over the numbers",
    "retried": "sends retried after a timeout, 5xx or 429",
    "refused": "numbers SMN refused",
    "delivered": "SMS per number",
    "last_error": "the last problem, if any",
}

_Style = Callable[[str, str], str]  # style(text, ansi_code): how a piece of output is emphasised
_Say = Callable[[str, str], None]  # say(what, outcome): narrates one step of the incident


def _plain(text: str, code: str) -> str:
    """Return ``text`` unstyled (the default: no colour)."""
    return text


def run_demo(out: TextIO, style: Callable[[str, str], str] = _plain) -> list[ReceivedMessage]:
    """Replay an incident against a FakeSMNServer on 127.0.0.1; print what each phone received.

    Args:
        out: Where the narration, the phones and the counters are printed.
        style: Emphasises text with an ANSI code (``"1"`` bold, ``"2"`` dim, ``"33"`` yellow, ...).

    Returns:
        The SMS the fake server accepted; none means the demo itself is broken.
    """
    from smn_alert.testing import FakeSMNServer

    replay, started = _Replay(), time.perf_counter()
    _bypass_proxy()
    with FakeSMNServer(wall_clock=replay.wall) as server:
        stats, processor = _replay_incident(server, replay, out, style)
        messages = server.messages
    out.write(f"\nplayed in {time.perf_counter() - started:.1f} s\n")
    _show_phones(messages, out, style)
    _show_stats(stats, out, style)
    if processor is not None:
        counters = processor.stats()
        out.write(
            f"  SMNProcessor.stats(): received {counters['received']}, sent {counters['sent']} (own budget)\n"
        )
    fleet = _play_fleet(out, style)
    out.write("\nNext: put SMNHandler in your logging config (README.md), then `smn-alert check`.\n")
    return messages + fleet


def _bypass_proxy() -> None:
    """Add 127.0.0.1 to ``no_proxy``: a proxy must not stand between us and the fake server."""
    proxies = (os.environ.get("no_proxy"), os.environ.get("NO_PROXY"), "127.0.0.1")
    os.environ["no_proxy"] = ",".join(filter(None, proxies))


class _Replay:
    """Replayed time: the pipeline decides by it, so minutes of an incident play in a fraction of a second."""

    def __init__(self) -> None:
        self.t = 0.0
        # The pager stamps "held back since HH:MM" with the real clock (SMNHandler takes no wall clock),
        # so the replay is placed so that the second the budget runs out is now: that footer tells the truth.
        self._start = time.time() - _HOLD_AT

    def monotonic(self) -> float:
        """Return the time the handler's pipeline decides windows and budget by."""
        return 100_000.0 + self.t

    def wall(self) -> float:
        """Return the replay's wall-clock time, for log records and the fake server."""
        return self._start + self.t

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of the incident pass."""
        self.t += seconds

    def stamp(self, factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
        """Wrap a log record factory so that records carry the replay's time."""

        def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = factory(*args, **kwargs)
            record.created = self.wall()
            return record

        return make


def _replay_incident(
    server: FakeSMNServer, replay: _Replay, out: TextIO, style: _Style
) -> tuple[dict[str, object], Any]:
    """Set up the pager, play the incident, tear down; return the handler's stats and the processor."""
    factory = logging.getLogRecordFactory()
    handler = processor = None
    try:
        logging.setLogRecordFactory(replay.stamp(factory))
        handler = _demo_handler(server, replay)
        processor, structlogged = _demo_processor(server, replay)
        out.write(
            style("smn-alert demo: an incident replayed against FakeSMNServer on 127.0.0.1", "1") + "\n"
        )
        out.write("settings: window 60 s, budget 3 SMS per 10 min (defaults 300 s, 5), 2 on-call numbers;\n")
        out.write('act 1 is one process paging alone (shared_state="process"), on a replayed clock\n\n')
        _play(replay, handler, structlogged, _narrator(replay, out, style))
        stats: dict[str, object] = handler.stats()
        return stats, processor
    finally:
        logging.setLogRecordFactory(factory)
        for closeable in (handler, processor):
            if closeable is not None:
                closeable.close()
        logging.getLogger().handlers = [h for h in logging.getLogger().handlers if h is not handler]


def _narrator(replay: _Replay, out: TextIO, style: _Style) -> _Say:
    """Return ``say(what, outcome)``, which prints one step of the incident at the replay's time."""

    def say(what: str, outcome: str) -> None:
        when = time.strftime("%H:%M:%S", time.localtime(replay.wall()))
        out.write(f"  {when}  {what:<56} {style('-> ' + outcome, '33')}\n")

    return say


def _demo_handler(server: FakeSMNServer, replay: _Replay) -> Any:
    """Configure the root logger with an ``SMNHandler`` through ``dictConfig``; return the handler."""
    from smn_alert._handler import SMNHandler

    pager: dict[str, Any] = {
        "class": "smn_alert.SMNHandler",
        "level": "ERROR",
        "endpoints": list(DEMO_NUMBERS),
    }
    pager.update(sign_id=_SIGN_ID, clock=replay.monotonic, **_ALONE, **server.settings())
    root = {"level": "INFO", "handlers": ["pager"]}
    logging.config.dictConfig(
        {"version": 1, "disable_existing_loggers": False, "handlers": {"pager": pager}, "root": root}
    )
    return next(h for h in logging.getLogger().handlers if isinstance(h, SMNHandler))


def _demo_processor(server: FakeSMNServer, replay: _Replay) -> tuple[Any, Optional[Callable[[], None]]]:
    """Return an ``SMNProcessor`` and a function logging one error through it (``None`` without structlog)."""
    try:
        import structlog
    except ImportError:
        return None, None
    from smn_alert._processor import SMNProcessor

    settings = {**_ALONE, **server.settings()}
    processor = SMNProcessor(list(DEMO_NUMBERS), sign_id=_SIGN_ID, clock=replay.monotonic, **settings)
    chain: list[Any] = [
        structlog.processors.add_log_level,
        processor,
        structlog.processors.KeyValueRenderer(),
    ]
    log = structlog.wrap_logger(structlog.ReturnLogger(), processors=chain).bind(logger="shop.refunds")

    def log_one() -> None:
        log.error("refund_failed", order_id="A-0977", amount="19.99 EUR")
        processor.flush(_WAIT)

    return processor, log_one


# --- the incident ---------------------------------------------------------------------------------------
def _play(
    replay: _Replay,
    handler: Any,
    structlogged: Optional[Callable[[], None]],
    say: _Say,
) -> None:
    """Play the incident; ``say(what, outcome)`` narrates each step at the replay's time."""
    say("ERROR shop.payments: charge failed", "first alert of a quiet spell: paged at once")
    logging.getLogger("shop.payments").error("charge failed for order %s: card said %d", "A-1042", 502)
    handler.flush(_WAIT)
    if structlogged is not None:
        replay.advance(2)
        say("structlog ERROR refund_failed", "SMNProcessor pages it at once")
        structlogged()
    replay.t = 5
    say(f"4 threads log {_BURST:,} errors of 3 kinds in 45 s", "folded while the 60 s window is open")
    _burst(replay)
    replay.t = 60
    say("the window closes", "one digest SMS with the counts")
    handler.flush(_WAIT)
    replay.t = 75
    say("CRITICAL shop.worker: order worker crashed (traceback)", "worse than ERROR: paged at once")
    _crash()
    handler.flush(_WAIT)
    _spend_budget(replay, handler, say)


def _spend_budget(replay: _Replay, handler: Any, say: _Say) -> None:
    """Play the end of the incident: errors once the budget is spent, then the SMS when it refills."""
    replay.t = _HOLD_AT
    say("a 2,000-char error with a password, 180 more errors", "3 SMS in 10 min: budget spent, held back")
    dump = "login failed for user ana: POST /login body=user=ana&password=hunter2&remember=1 headers="
    logging.getLogger("shop.api").error(dump + "X-Trace: 0af7651916cd43dd; " * 70)
    for _ in range(6):
        for _ in range(30):
            logging.getLogger("shop.http").error("upstream %s answered %d", "inventory", 503)
        replay.advance(5)
    handler.flush(0.5)  # returns at once (the budget is spent), once the worker has counted what it holds
    replay.t = 215
    say("the budget refills", "one SMS with the counts, saying what was held back")
    handler.flush(_WAIT)


def _burst(replay: _Replay, threads: int = 4, rounds: int = 9) -> None:
    """Log thousands of errors of three kinds from several threads, 5 replayed seconds per round."""
    barrier = threading.Barrier(threads, action=lambda: replay.advance(5))

    def work() -> None:
        db, http, jobs = (logging.getLogger(f"shop.{name}") for name in ("db", "http", "jobs"))
        for _ in range(rounds):
            for _ in range(60):
                try:
                    raise TimeoutError("read timed out after 5.0 s")
                except TimeoutError:
                    db.error("query on %s timed out", "orders", exc_info=True)
            for _ in range(25):
                http.error("upstream %s answered %d", "inventory", 503)
            for n in range(4):
                jobs.error("job %s failed: retry limit reached", f"email-{n}")
            barrier.wait()

    pool = [threading.Thread(target=work, name=f"web-{index}") for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


# --- what the phones show -------------------------------------------------------------------------------
def _show_phones(
    messages: Sequence[ReceivedMessage],
    out: TextIO,
    style: _Style,
    title: str = "What each on-call phone received",
) -> None:
    """Print what each number received, as a phone shows it: time, text, billed segments."""
    out.write(style(f"\n{title}", "1") + "\n")
    first: list[ReceivedMessage] = []
    for number in DEMO_NUMBERS:
        got = [message for message in messages if number in message.delivered]
        mainland = is_mainland_china(number)
        segments = sum(billed_segments(message.message, mainland=mainland) for message in got)
        out.write(f"\n{style(mask_number(number), '36')}: {len(got)} SMS, {segments} billed segments\n")
        if first and got == first:
            out.write(f"  (the same {len(got)} SMS as {mask_number(DEMO_NUMBERS[0])})\n")
            continue
        first = first or got
        for message in got:
            _show_sms(message, mainland, out, style)
    if title == "What each on-call phone received":  # the first listing explains segments, once
        out.write(
            "\nSegments: GSM-7 holds 160 characters, then 153 per segment; one other character makes it\n"
        )
        out.write(
            "UCS-2 (70, then 67). SMN adds your signature; mainland China numbers always bill as UCS-2.\n"
        )


def _show_sms(message: ReceivedMessage, mainland: bool, out: TextIO, style: _Style) -> None:
    """Print one SMS: when it arrived, what it bills, its encoding, then its text."""
    text, when = message.message, time.strftime("%H:%M:%S", time.localtime(message.received_at))
    billed = billed_segments(text, mainland=mainland)
    how = " as UCS-2 (mainland number)" if mainland and sms_encoding(text) == "GSM-7" else ""
    about = f"{billed} billed segment(s){how}, {sms_encoding(text)} text, {len(text)} characters"
    out.write(f"  {style(when, '1')}  {style(about, '2')}\n")
    out.write("".join(f"  | {line}\n" for line in text.splitlines()) + "\n")


def _show_stats(stats: dict[str, object], out: TextIO, style: _Style) -> None:
    """Print the handler's counters, one line each on what they mean, and how they add up."""
    out.write(style("\nThe handler's counters: SMNHandler.stats()", "1") + "\n")
    for name, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        out.write(f"  {name:<11} {shown:>7}  {style(_COUNTERS.get(name, ''), '2')}\n")
    parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending", "handed")
    total = " + ".join(f"{stats[name]:,}" for name in parts)
    out.write(f"  received = {' + '.join(parts)}:\n  {stats['received']:,} = {total}\n")


def _crash() -> None:
    """Log a CRITICAL with a real traceback, as application code would (its frame is shown in the SMS)."""

    def load_customer(order: dict[str, str]) -> str:
        return order["customer"]

    try:
        load_customer({"id": "A-1042"})
    except KeyError:
        logging.getLogger("shop.worker").critical("order worker crashed", exc_info=True)


# --- act 2: the fleet -----------------------------------------------------------------------------------
def _play_fleet(out: TextIO, style: _Style) -> list[ReceivedMessage]:
    """Fork worker processes that log the same incident, sharing one SQLite file; show what the phones got."""
    out.write(style(f"\nAct 2: {FLEET_WORKERS} worker processes, one incident, one shared state", "1") + "\n")
    if not hasattr(os, "fork"):
        out.write("  (this scene forks worker processes: not on this platform)\n")
        return []
    from smn_alert import _sharing, _store_sqlite  # noqa: F401  (imported once, before the fork)
    from smn_alert.testing import FakeSMNServer

    with tempfile.TemporaryDirectory(prefix="smn_alert_demo_") as tmp, FakeSMNServer() as server:
        settings = {**DEMO_SETTINGS, **server.settings(), "shared_state": f"sqlite:///{tmp}/fleet.db"}
        out.write('settings as in act 1, real clock, shared_state="sqlite:///<temporary dir>/fleet.db"\n\n')
        say = _fleet_narrator(out, style)
        total = FLEET_WORKERS * _FLEET_ERRORS
        say(
            f"{FLEET_WORKERS} forked workers log {total} errors of 2 kinds in {_FLEET_SECONDS:g} s",
            "one of them pages, the others count",
        )
        results = _fork_workers(settings, Path(tmp))
        say("the workers exit one after another", "the last one sends the digest of all")
        messages = server.messages
    _show_phones(messages, out, style, "What each on-call phone received from the fleet")
    _show_workers(results, messages, out, style)
    return messages


def _fleet_narrator(out: TextIO, style: _Style) -> _Say:
    def say(what: str, outcome: str) -> None:
        out.write(f"  {time.strftime('%H:%M:%S')}  {what:<56} {style('-> ' + outcome, '33')}\n")

    return say


def _fork_workers(settings: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """Run the workers (forked), wait for them (killing, by pid, any past the deadline); their counters."""
    start, pids = time.time() + 0.5, []
    with warnings.catch_warnings():  # Python 3.12+ warns on fork with threads: the fake server's, unused
        warnings.simplefilter("ignore", DeprecationWarning)
        for index in range(FLEET_WORKERS):
            pid = os.fork()
            if pid == 0:
                _worker(index, settings, start, folder)
            pids.append(pid)
    deadline = time.monotonic() + _FLEET_DEADLINE
    for pid in pids:
        while os.waitpid(pid, os.WNOHANG)[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.02)
    found = [folder / f"{index}.json" for index in range(FLEET_WORKERS)]
    return [json.loads(path.read_text()) for path in found if path.exists()]


def _worker(index: int, settings: dict[str, Any], start: float, folder: Path) -> None:
    """One worker: log the incident, leave (staggered), write its counters; never returns."""
    code = 1
    try:
        from smn_alert._handler import SMNHandler

        handler = SMNHandler(list(DEMO_NUMBERS), sign_id=_SIGN_ID, **settings)
        db, http = (logging.getLogger(f"shop.{name}") for name in ("db", "http"))
        for logger in (db, http):
            logger.handlers, logger.propagate = [handler], False
        for n in range(_FLEET_ERRORS):
            time.sleep(max(0.0, start + n * _FLEET_SECONDS / _FLEET_ERRORS - time.time()))
            if n % 5 < 4:
                db.error("query on %s timed out", "orders")
            else:
                http.error("upstream %s answered %d", "inventory", 503)
        time.sleep(max(0.0, start + _FLEET_SECONDS + 0.1 * index - time.time()))
        handler.close()  # what the interpreter's exit does for it
        stats = handler.stats()
        (folder / f"{index}.json").write_text(json.dumps({"pid": os.getpid(), **stats}, default=str))
        code = 0
    finally:
        os._exit(code)


def _show_workers(
    results: list[dict[str, Any]], messages: Sequence[ReceivedMessage], out: TextIO, style: _Style
) -> None:
    """Print each worker's counters and how the phones' counts add up to every alert the workers logged."""
    out.write(style("\nEach worker's counters: SMNHandler.stats() in its own process", "1") + "\n")
    parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending", "handed")
    for result in results:
        shown = " + ".join(f"{name} {result[name]:,}" for name in parts if result[name])
        out.write(f"  pid {result['pid']:<7}  received {result['received']:,} = {shown}\n")
    logged = sum(int(result["received"]) for result in results)
    firsts = [message for message in messages if not _COUNT.match(message.message)]
    counted = sum(_counted(message.message) for message in messages)
    out.write(
        f"  the phones got {len(firsts)} first page(s) and {len(messages) - len(firsts)} digest(s): "
        f"{counted:,} alerts counted of {logged:,} logged by {len(results)} processes\n"
    )


def _counted(text: str) -> int:
    """Return the alerts an SMS counts: its lines' ``x1,234``, or 1 for a first page."""
    counts = [_COUNT.match(line) for line in text.splitlines()]
    found = [int(match.group(1).replace(",", "")) for match in counts if match]
    return sum(found) if found else 1
