"""``smn-alert``: watch a replayed incident page two phones, send one real page, check the configuration."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, NoReturn, Optional, TextIO

from smn_alert import __version__
from smn_alert.config import ENV_ENDPOINTS, ENV_PREFIX, ENV_SIGN_ID, ENV_TOPIC_URN, PagerSettings, mask_secret
from smn_alert.errors import SMNAuthError, SMNConfigError, SMNError
from smn_alert.fields import mask_number
from smn_alert.text import count_segments, sms_encoding

__all__ = ["DEMO_NUMBERS", "DEMO_SETTINGS", "EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "build_parser", "main"]

#: Exit status: every number got the page, or the check passed.
EXIT_OK = 0
#: Exit status: SMN answered, but refused some of the numbers.
EXIT_REFUSED = 1
#: Exit status: nothing was sent, or the input or the configuration is wrong.
EXIT_FAILED = 2
#: The demo's on-call numbers; FakeSMNServer plays SMN, so no real phone is involved.
DEMO_NUMBERS = ("+8613800000001", "+8613900000002")
#: Short window and small budget, so the demo shows folding and the budget within minutes of replay.
DEMO_SETTINGS: dict[str, Any] = {"prefix": "shop", "window": 60, "budget": 3, "budget_period": 600}

_WAIT = 5.0  # seconds the demo waits for any one page; the whole demo takes well under one
_SIGN_ID = "6be340e91e5241e4b5d85837e6709104"
_HOLD_AT = 150.0  # second of the replay at which the SMS budget runs out (see _Replay)
_BURST = 4 * 9 * (60 + 25 + 4)  # errors _burst() logs: threads x rounds x (three kinds)
_NO_SECRETS = "AK and SK come only from HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, never from a flag."
_SEND_EXAMPLE = (
    'example:\n  smn-alert send --to +8613800000000 --sign-id 6be340e9... "db-1 down, failing over"\n\n'
)
_CHECK_EXAMPLE = "example:\n  smn-alert check --send-test\n\n"
_COUNTERS = {
    "received": "alerts taken in (records at ERROR or above)",
    "sent": "alerts shown as a line of their own in a delivered SMS",
    "folded": 'alerts counted in a digest line ("x2,160") instead of an SMS of their own',
    "suppressed": "alerts that waited for the SMS budget, then went out as a count",
    "dropped": "alerts whose text was dropped because the buffer was full (still counted)",
    "failed": "alerts whose SMS could not be delivered",
    "pending": "alerts not resolved yet",
    "pages": "SMS texts sent (each to every number)",
    "segments": "billed SMS segments, summed over the numbers",
    "retried": "sends retried after a timeout, 5xx or 429",
    "refused": "numbers SMN refused",
    "delivered": "SMS per number",
    "last_error": "the last problem, if any",
}


class _Failure(Exception):
    """A failure the user must act on, said in one line."""


class _Style:
    """ANSI styles, only on a terminal and only when ``NO_COLOR`` is unset (https://no-color.org)."""

    def __init__(self, stream: TextIO) -> None:
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self.on = tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"

    def __call__(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of ``smn-alert``."""

    def error(self, message: str) -> NoReturn:
        """Print ``smn-alert: error: ...`` and exit with :data:`EXIT_FAILED`."""
        self.exit(EXIT_FAILED, f"smn-alert: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``smn-alert`` argument parser (commands ``demo``, ``send``, ``check``)."""
    parser = _Parser(prog="smn-alert", description="Page on-call people by SMS through Huawei Cloud SMN.")
    parser.add_argument("--version", action="version", version=f"smn-alert {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    demo = commands.add_parser("demo", help="replay an incident against a local fake SMN (no credentials)")
    demo.description = "Replay an incident against FakeSMNServer on 127.0.0.1; show what each phone got."
    demo.set_defaults(run=_run_demo)
    where = _Parser(add_help=False)
    where.add_argument(
        "--to", action="append", metavar="NUMBER", help=f"on-call number, repeatable ({ENV_ENDPOINTS})"
    )
    where.add_argument("--topic", metavar="URN", help=f"publish to this topic instead ({ENV_TOPIC_URN})")
    where.add_argument("--sign-id", metavar="ID", help=f"approved SMS signature id ({ENV_SIGN_ID})")
    where.add_argument("--endpoint-url", metavar="URL", help="SMN base URL (SMN_ALERT_ENDPOINT_URL)")
    where.add_argument("--region", help="region such as cn-north-4 (HUAWEICLOUD_SDK_REGION)")
    where.add_argument("--project-id", metavar="ID", help="project id (HUAWEICLOUD_SDK_PROJECT_ID)")
    raw = argparse.RawDescriptionHelpFormatter
    send = commands.add_parser("send", parents=[where], help="send one real page", formatter_class=raw)
    send.epilog = _SEND_EXAMPLE + _NO_SECRETS
    send.description = (
        "Send MESSAGE once. Exit status: 0 all got it, 1 some refused, 2 nothing sent/bad input."
    )
    send.add_argument("message", metavar="MESSAGE", help="the text, at most 490 characters")
    send.set_defaults(run=_run_send)
    check = commands.add_parser(
        "check", parents=[where], help="show the settings, say what is wrong", formatter_class=raw
    )
    check.description = "Show the settings from arguments and environment, secrets masked. Exit 0 OK, 2 not."
    check.epilog = _CHECK_EXAMPLE + _NO_SECRETS
    check.add_argument("--send-test", action="store_true", help="also send one test page")
    check.set_defaults(run=_run_check)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``smn-alert`` and return its exit status; errors are one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, sys.stdout))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `smn-alert demo | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a command-line tool says what went wrong in one line
        sys.stderr.write(f"smn-alert: error: {_explain(exc)}\n")
        return EXIT_FAILED


def _explain(exc: Exception) -> str:
    if isinstance(exc, (_Failure, SMNConfigError)):
        return str(exc)
    if isinstance(exc, SMNAuthError):
        return f"SMN refused the credentials or permission: {exc} (5 bad signatures lock the key 5 min)"
    if isinstance(exc, SMNError):
        return f"SMN did not take the page: {exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


# --- send and check -----------------------------------------------------------------------------------
# (setting, command-line flag, environment variable); secrets have no flag, so they never show in `ps`.
_ROWS = (
    ("endpoint_url", "--endpoint-url", "SMN_ALERT_ENDPOINT_URL"),
    ("region", "--region", "HUAWEICLOUD_SDK_REGION"),
    ("project_id", "--project-id", "HUAWEICLOUD_SDK_PROJECT_ID"),
    ("ak", None, "HUAWEICLOUD_SDK_AK"),
    ("sk", None, "HUAWEICLOUD_SDK_SK"),
    ("security_token", None, "HUAWEICLOUD_SDK_SECURITY_TOKEN"),
    ("endpoints", "--to", ENV_ENDPOINTS),
    ("topic_urn", "--topic", ENV_TOPIC_URN),
    ("sign_id", "--sign-id", ENV_SIGN_ID),
    ("prefix", None, ENV_PREFIX),
)


def _resolve(args: argparse.Namespace) -> tuple[Any, PagerSettings]:
    """Return the client and the settings for ``args``; the environment fills in what they lack."""
    from smn_alert.client import SMNClient  # not at import: keeps `smn-alert --help` fast

    given = {"endpoints": args.to, "topic_urn": args.topic, "sign_id": args.sign_id}
    settings = PagerSettings.from_kwargs(**{name: value for name, value in given.items() if value})
    return SMNClient(endpoint_url=args.endpoint_url, region=args.region, project_id=args.project_id), settings


def _deliver(client: Any, settings: PagerSettings, message: str, out: TextIO) -> int:
    """Send ``message`` once, print what happened for each recipient, return the exit status."""
    style = _Style(out)
    out.write(f"{len(message)} characters, {sms_encoding(message)}, {count_segments(message)} segment(s)\n")
    if settings.topic_urn is not None:
        topic = client.publish_to_topic(settings.topic_urn, message, subject=settings.subject)
        out.write(f"{style('published', '32')}  {settings.topic_urn}  message_id {topic.message_id}\n")
        return EXIT_OK
    options = {name: getattr(settings, name) for name in ("sign_id", "message_include_sign_flag")}
    batch = client.publish_sms(
        settings.endpoints,
        message,
        extend_code=settings.extend_code,
        extend_src_id=settings.extend_src_id,
        **options,
    )
    for result in batch.results:
        outcome = f"message_id {result.message_id}" if result.ok else f"{result.code} {result.message or ''}"
        word = style("sent   ", "32") if result.ok else style("refused", "31")
        out.write(f"{word}  {mask_number(result.endpoint)}  {outcome.strip()}\n")
    if not batch.delivered:
        raise _Failure(f"SMN refused every number ({len(batch.results)})")
    return EXIT_OK if batch.ok else EXIT_REFUSED


def _run_send(args: argparse.Namespace, out: TextIO) -> int:
    client, settings = _resolve(args)
    with client:
        return _deliver(client, settings, args.message, out)


def _lookup(args: argparse.Namespace, flag: Optional[str], env: str) -> tuple[Optional[str], str]:
    """Return a setting's value and where it came from: its flag, the environment, or nowhere."""
    value = getattr(args, flag.lstrip("-").replace("-", "_")) if flag else None
    if value:
        return (",".join(value) if isinstance(value, list) else str(value)), str(flag)
    from_env = os.environ.get(env, "").strip()
    return (from_env, env) if from_env else (None, f"not set ({env})")


def _shown(name: str, value: Optional[str]) -> str:
    """Return a setting as diagnostics may show it: numbers masked, secrets hidden."""
    if value is None:
        return "-"
    if name == "endpoints":
        return ", ".join(mask_number(number.strip()) for number in value.replace(";", ",").split(","))
    if name in ("ak", "sk", "security_token"):
        return mask_secret(value, keep=4 if name == "ak" else 0)
    return value


def _missing(values: dict[str, Optional[str]]) -> list[str]:
    """Say what must be set before anything can be sent."""
    target = values["endpoints"] or values["topic_urn"]
    rules = (
        (values["project_id"], "project_id is not set: set HUAWEICLOUD_SDK_PROJECT_ID"),
        (
            values["region"] or values["endpoint_url"],
            "region is not set: set HUAWEICLOUD_SDK_REGION (cn-north-4)",
        ),
        (
            values["ak"] or values["sk"],
            "credentials are not set: set HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK",
        ),
        (target, f"nobody to page: set {ENV_ENDPOINTS} or {ENV_TOPIC_URN}, or pass --to or --topic"),
        (values["sign_id"] or not values["endpoints"], f"sign_id is not set: set {ENV_SIGN_ID} or --sign-id"),
    )
    return [problem for ok, problem in rules if not ok]


def _run_check(args: argparse.Namespace, out: TextIO) -> int:
    style = _Style(out)
    out.write(style("smn-alert check: settings from arguments and environment", "1") + "\n\n")
    values: dict[str, Optional[str]] = {}
    for name, flag, env in _ROWS:
        values[name], source = _lookup(args, flag, env)
        out.write(f"  {name:<15} {_shown(name, values[name]):<40} {style(source, '2')}\n")
    problems = _missing(values)
    try:
        client, settings = _resolve(args) if not problems else (None, None)
    except (SMNConfigError, TypeError) as exc:
        client, settings, problems = None, None, [str(exc)]
    if client is None or settings is None:
        out.write("\n" + "".join(f"  {style('problem', '31')}: {problem}\n" for problem in problems))
        raise _Failure(f"the configuration is not usable ({len(problems)} problem(s) above)")
    target = f"topic {settings.topic_urn}" if settings.topic_urn else f"{len(settings.endpoints)} number(s)"
    out.write(f"\n{style('OK', '32')}: ready to page {target} through {client.endpoint}\n")
    if not args.send_test:
        out.write("Nothing was sent; add --send-test to send one test page.\n")
        return EXIT_OK
    text = f"smn-alert check: test page from {socket.gethostname()[:40]} at {time.strftime('%H:%M')}"
    with client:
        status = _deliver(client, settings, f"{settings.prefix} {text}".strip(), out)
    return EXIT_OK if status == EXIT_OK else EXIT_FAILED


# --- demo ---------------------------------------------------------------------------------------------
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


def _crash() -> None:
    """Log a CRITICAL with a real traceback."""

    def load_customer(order: dict[str, str]) -> str:
        return order["customer"]

    try:
        load_customer({"id": "A-1042"})
    except KeyError:
        logging.getLogger("shop.worker").critical("order worker crashed", exc_info=True)


def _play(replay: _Replay, handler: Any, structlogged: Any, say: Callable[[str, str], None]) -> None:
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


def _demo_handler(server: Any, replay: _Replay) -> Any:
    """Configure the root logger with an ``SMNHandler`` through ``dictConfig``; return the handler."""
    from smn_alert.handler import SMNHandler

    pager: dict[str, Any] = {
        "class": "smn_alert.SMNHandler",
        "level": "ERROR",
        "endpoints": list(DEMO_NUMBERS),
    }
    pager.update(sign_id=_SIGN_ID, clock=replay.monotonic, **DEMO_SETTINGS, **server.settings())
    root = {"level": "INFO", "handlers": ["pager"]}
    logging.config.dictConfig(
        {"version": 1, "disable_existing_loggers": False, "handlers": {"pager": pager}, "root": root}
    )
    return next(h for h in logging.getLogger().handlers if isinstance(h, SMNHandler))


def _demo_processor(server: Any, replay: _Replay) -> tuple[Any, Optional[Callable[[], None]]]:
    """Return an ``SMNProcessor`` and a function logging one error through it (``None`` without structlog)."""
    try:
        import structlog
    except ImportError:
        return None, None
    from smn_alert.processor import SMNProcessor

    settings = {**DEMO_SETTINGS, **server.settings()}
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


def _show_phones(messages: Sequence[Any], out: TextIO, style: _Style) -> None:
    """Print what each number received, as a phone shows it: time, text, billed segments."""
    out.write(style("\nWhat each on-call phone received", "1") + "\n")
    first: list[Any] = []
    for number in DEMO_NUMBERS:
        got = [message for message in messages if number in message.delivered]
        segments = sum(count_segments(message.message) for message in got)
        out.write(f"\n{style(mask_number(number), '36')}: {len(got)} SMS, {segments} billed segments\n")
        if first and got == first:
            out.write(f"  (the same {len(got)} SMS as {mask_number(DEMO_NUMBERS[0])})\n")
            continue
        first = first or got
        for message in got:
            text, when = message.message, time.strftime("%H:%M:%S", time.localtime(message.received_at))
            about = f"{count_segments(text)} segment(s), {sms_encoding(text)}, {len(text)} characters"
            out.write(f"  {style(when, '1')}  {style(about, '2')}\n")
            out.write("".join(f"  | {line}\n" for line in text.splitlines()) + "\n")
    out.write("\nSegments: GSM-7 holds 160 characters, then 153 per segment; one other character makes it\n")
    out.write("UCS-2 (70, then 67). SMN adds your signature; mainland China numbers always bill as UCS-2.\n")


def _show_stats(stats: dict[str, object], out: TextIO, style: _Style) -> None:
    """Print the handler's counters, one line each on what they mean, and how they add up."""
    out.write(style("\nThe handler's counters: SMNHandler.stats()", "1") + "\n")
    for name, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        out.write(f"  {name:<11} {shown:>7}  {style(_COUNTERS.get(name, ''), '2')}\n")
    parts = ("sent", "folded", "suppressed", "dropped", "failed", "pending")
    total = " + ".join(f"{stats[name]:,}" for name in parts)
    out.write(f"  received = {' + '.join(parts)}:\n  {stats['received']:,} = {total}\n")


def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    from smn_alert.testing import FakeSMNServer

    style, replay, started = _Style(out), _Replay(), time.perf_counter()
    proxies = (os.environ.get("no_proxy"), os.environ.get("NO_PROXY"), "127.0.0.1")
    os.environ["no_proxy"] = ",".join(
        filter(None, proxies)
    )  # a proxy must not stand between us and 127.0.0.1
    factory = logging.getLogRecordFactory()
    with FakeSMNServer(wall_clock=replay.wall) as server:
        handler = processor = None
        try:
            logging.setLogRecordFactory(replay.stamp(factory))
            handler = _demo_handler(server, replay)
            processor, structlogged = _demo_processor(server, replay)
            out.write(
                style("smn-alert demo: an incident replayed against FakeSMNServer on 127.0.0.1", "1") + "\n"
            )
            out.write(
                "settings: window 60 s, budget 3 SMS per 10 min (defaults 300 s, 5), 2 on-call numbers\n\n"
            )

            def say(what: str, outcome: str) -> None:
                when = time.strftime("%H:%M:%S", time.localtime(replay.wall()))
                out.write(f"  {when}  {what:<56} {style('-> ' + outcome, '33')}\n")

            _play(replay, handler, structlogged, say)
            stats = handler.stats()
        finally:
            logging.setLogRecordFactory(factory)
            for closeable in (handler, processor):
                if closeable is not None:
                    closeable.close()
            logging.getLogger().handlers = [h for h in logging.getLogger().handlers if h is not handler]
        messages = server.messages
    out.write(f"\nplayed in {time.perf_counter() - started:.1f} s\n")
    _show_phones(messages, out, style)
    _show_stats(stats, out, style)
    if processor is not None:
        counters = processor.stats()
        out.write(
            f"  SMNProcessor.stats(): received {counters['received']}, sent {counters['sent']} (own budget)\n"
        )
    out.write("\nNext: put SMNHandler in your logging config (README.md), then `smn-alert check`.\n")
    if not messages:
        raise _Failure("the demo received no page: this is a bug, please report it")
    return EXIT_OK
