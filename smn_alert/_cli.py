"""``smn-alert``: replay an incident, send one real page, check the configuration, show the shared state."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn, Optional, TextIO

from smn_alert import __version__
from smn_alert._client_settings import (
    ENV_AK,
    ENV_ENDPOINT_URL,
    ENV_PROJECT_ID,
    ENV_REGION,
    ENV_SECURITY_TOKEN,
    ENV_SK,
)
from smn_alert._demo import run_demo
from smn_alert._request_fields import ENV_ENDPOINTS, ENV_SIGN_ID, ENV_TOPIC_URN
from smn_alert._settings import ENV_PREFIX, PagerSettings, mask_secret
from smn_alert._smn import mask_number
from smn_alert._store import ENV_SHARED_STATE
from smn_alert._text import count_segments, sanitize, sms_encoding
from smn_alert.errors import SMNAuthError, SMNConfigError, SMNError

#: Exit status: every number got the page, or the check passed.
EXIT_OK = 0
#: Exit status: SMN answered, but refused some of the numbers.
EXIT_REFUSED = 1
#: Exit status: nothing was sent, or the input or the configuration is wrong.
EXIT_FAILED = 2
_NO_SECRETS = "AK and SK come only from HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK, never from a flag."
_SEND_EXAMPLE = (
    'example:\n  smn-alert send --to +8613800000000 --sign-id 6be340e9... "db-1 down, failing over"\n\n'
)
_CHECK_EXAMPLE = "example:\n  smn-alert check --send-test\n\n"


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
    """Build the ``smn-alert`` argument parser (commands ``demo``, ``send``, ``check``, ``status``)."""
    parser = _Parser(prog="smn-alert", description="Page on-call people by SMS through Huawei Cloud SMN.")
    parser.add_argument("--version", action="version", version=f"smn-alert {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, required=True)
    demo = commands.add_parser("demo", help="replay an incident against a local fake SMN (no credentials)")
    demo.description = "Replay an incident against FakeSMNServer on 127.0.0.1; show what each phone got."
    demo.set_defaults(run=_run_demo)
    where = _target_options()
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
    status = commands.add_parser("status", help="show the shared state: each target's fleet view")
    status.description = (
        "Show what the processes paging each target share: window, alerts waiting, leases, budget, circuit, "
        f"live processes. Exit 0, or 2 when the store cannot be read. The store: --shared-state, else "
        f"{ENV_SHARED_STATE}, else this user's default SQLite file."
    )
    status.add_argument(
        "--shared-state", metavar="URL", help=f"sqlite:///path or redis://... ({ENV_SHARED_STATE})"
    )
    status.set_defaults(run=_run_status)
    return parser


def _target_options() -> _Parser:
    """Return the options ``send`` and ``check`` share: whom to page and which SMN to use."""
    where = _Parser(add_help=False)
    where.add_argument(
        "--to", action="append", metavar="NUMBER", help=f"on-call number, repeatable ({ENV_ENDPOINTS})"
    )
    where.add_argument("--topic", metavar="URN", help=f"publish to this topic instead ({ENV_TOPIC_URN})")
    where.add_argument("--sign-id", metavar="ID", help=f"approved SMS signature id ({ENV_SIGN_ID})")
    where.add_argument(
        "--signature",
        metavar="【NAME】",
        help="instead of --sign-id: your approved signature, written at the head of the message",
    )
    where.add_argument("--endpoint-url", metavar="URL", help="SMN base URL (SMN_ALERT_ENDPOINT_URL)")
    where.add_argument("--region", help="region such as cn-north-4 (HUAWEICLOUD_SDK_REGION)")
    where.add_argument("--project-id", metavar="ID", help="project id (HUAWEICLOUD_SDK_PROJECT_ID)")
    return where


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
    ("endpoint_url", "--endpoint-url", ENV_ENDPOINT_URL),
    ("region", "--region", ENV_REGION),
    ("project_id", "--project-id", ENV_PROJECT_ID),
    ("ak", None, ENV_AK),
    ("sk", None, ENV_SK),
    ("security_token", None, ENV_SECURITY_TOKEN),
    ("endpoints", "--to", ENV_ENDPOINTS),
    ("topic_urn", "--topic", ENV_TOPIC_URN),
    ("sign_id", "--sign-id", ENV_SIGN_ID),
    ("prefix", None, ENV_PREFIX),
)


def _resolve(args: argparse.Namespace) -> tuple[Any, PagerSettings]:
    """Return the client and the settings for ``args``; the environment fills in what they lack."""
    from smn_alert._client import SMNClient  # not at import: keeps `smn-alert --help` fast

    given = {"endpoints": args.to, "topic_urn": args.topic, "sign_id": args.sign_id}
    if args.signature:  # message_include_sign_flag mode: the signature is part of the text
        given.update(signature=args.signature, message_include_sign_flag="true")
    settings = PagerSettings.from_kwargs(**{name: value for name, value in given.items() if value})
    return SMNClient(endpoint_url=args.endpoint_url, region=args.region, project_id=args.project_id), settings


def _deliver(client: Any, settings: PagerSettings, message: str, out: TextIO) -> int:
    """Send ``message`` once, print what happened for each recipient, return the exit status."""
    style = _Style(out)
    message = (settings.signature or "") + message
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


def _missing(values: dict[str, Optional[str]], signature: Optional[str] = None) -> list[str]:
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
        (
            values["sign_id"] or signature or not values["endpoints"],
            f"sign_id is not set: set {ENV_SIGN_ID}, or pass --sign-id or --signature",
        ),
    )
    return [problem for ok, problem in rules if not ok]


def _run_check(args: argparse.Namespace, out: TextIO) -> int:
    style = _Style(out)
    out.write(style("smn-alert check: settings from arguments and environment", "1") + "\n\n")
    values: dict[str, Optional[str]] = {}
    for name, flag, env in _ROWS:
        values[name], source = _lookup(args, flag, env)
        out.write(f"  {name:<15} {_shown(name, values[name]):<40} {style(source, '2')}\n")
    problems = _missing(values, args.signature)
    try:
        client, settings = _resolve(args) if not problems else (None, None)
    except SMNConfigError as exc:
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
def _run_demo(args: argparse.Namespace, out: TextIO) -> int:
    if not run_demo(out, _Style(out)):
        raise _Failure("the demo received no page: this is a bug, please report it")
    return EXIT_OK


# --- status -------------------------------------------------------------------------------------------
def _run_status(args: argparse.Namespace, out: TextIO) -> int:
    """Print each target's fleet view, one block per target; nothing secret (the URL's password masked)."""
    from smn_alert._store import StoreUnavailable, open_store
    from smn_alert._store_sqlite import SQLiteStore

    url = args.shared_state or os.environ.get(ENV_SHARED_STATE, "")
    store = open_store(url)
    if store is None:
        raise _Failure("shared_state is 'process': nothing is shared, so there is nothing to show")
    style = _Style(out)
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):  # reading must not create it
        out.write(style(f"smn-alert status: {store.url}", "1") + "\n")
        out.write("no shared state yet: no process has used this store\n")
        return EXIT_OK
    try:
        views = [store.status(target) for target in store.targets()]
    except StoreUnavailable as exc:
        raise _Failure(f"cannot read the shared state: {exc}") from None
    finally:
        store.close()
    out.write(style(f"smn-alert status: {store.url}", "1") + "\n")
    out.write(f"{len(views)} target(s)\n" if views else "no target has state now: every one is quiet\n")
    for view in views:
        out.write("\n" + _status_block(view, style))
    return EXIT_OK


def _status_block(view: dict[str, Any], style: _Style) -> str:
    """Word one target's fleet view (see ``_store.status_view``) as aligned lines."""
    from smn_alert._compose import format_clock

    rows = [
        ("window", _status_window(view["window"])),
        ("waiting", f"{view['waiting']:,} alert(s) of {view['kinds']:,} kind(s) for the next digest"),
        (
            "leases",
            f"{view['leases']} digest(s) claimed, not yet confirmed ({view['expired_leases']} expired)",
        ),
        ("held back", "-" if view["held_since"] is None else f"since {format_clock(view['held_since'])}"),
        ("budget", "; ".join(f"{name}: {left:.1f} left" for name, left in view["budget"].items()) or "full"),
        ("circuit", _status_circuit(view["circuit"])),
        ("processes", f"{view['processes']} live on {view['hosts']} host(s)"),
    ]
    head = style(f"target {view['target']}", "1")
    return head + "\n" + "".join(f"  {name:<10} {text}\n" for name, text in rows)


def _status_window(window: Optional[dict[str, Any]]) -> str:
    from smn_alert._compose import human_duration

    if window is None:
        return "none: quiet, the next alert pages at once"
    level = logging.getLevelName(window["level"])
    if window["ends_in"] > 0:
        return f"open at {level}, ends in {human_duration(window['ends_in'])}"
    return f"ended {human_duration(-window['ends_in'])} ago at {level}: its digest is due"


def _status_circuit(circuit: Optional[dict[str, Any]]) -> str:
    from smn_alert._compose import human_duration

    if circuit is None:
        return "closed"
    reason = sanitize(str(circuit["reason"]))  # written by another process: no escape reaches the terminal
    return f"OPEN for {human_duration(circuit['seconds_left'])} more: {reason}"
