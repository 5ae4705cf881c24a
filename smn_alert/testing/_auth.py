"""``FakeSMNServer``'s API-gateway checks: X-Auth-Token or AK/SK signature, date skew, access-key lock-out.

Signatures are checked by the fake's own code (``_canonical``), never by the client's ``smn_alert._signer``.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import datetime, timezone
from typing import Callable

from smn_alert.testing import _canonical as canonical
from smn_alert.testing._wire import Rejection, Request


def _rejection(why: str) -> Rejection:
    return Rejection(401, "APIG.0301", f"Incorrect IAM authentication information: {why}", gateway=True)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (``compare_digest`` on str does not)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8"))


def _declared_hash_problem(req: Request, signed: tuple[str, ...]) -> str | None:
    """Refuse a signed ``X-Sdk-Content-Sha256`` that is neither ``UNSIGNED-PAYLOAD`` nor the body's hash."""
    if "x-sdk-content-sha256" not in signed or not req.body:
        return None
    declared = req.headers["x-sdk-content-sha256"].strip()
    if declared in (canonical.UNSIGNED_PAYLOAD, hashlib.sha256(req.body).hexdigest()):
        return None
    return "X-Sdk-Content-Sha256 is neither UNSIGNED-PAYLOAD nor the SHA-256 of the body"


class Authenticator:
    """The gateway's checks: token or AK/SK signature, date skew, lock-out after repeated bad signatures."""

    def __init__(
        self,
        ak: str,
        sk: str,
        *,
        auth_token: str | None,
        skew_limit: float,
        lock_after: int,
        lock_seconds: float,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self._ak, self._sk, self._token = ak, sk, auth_token
        self._skew_limit, self._clock, self._wall_clock = skew_limit, clock, wall_clock
        self._lock_after, self._lock_seconds = lock_after, lock_seconds
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def check(self, req: Request) -> None:
        """Return if ``req`` is authenticated, else raise the gateway's 401 rejection."""
        token = req.headers.get("x-auth-token")
        if token is not None:
            if self._token is None or not _same(token, self._token):
                raise _rejection("the X-Auth-Token is not valid")
            return
        parsed = canonical.parse(req.headers.get("authorization", ""))
        if parsed is None:
            raise _rejection("no SDK-HMAC-SHA256 Authorization header and no X-Auth-Token")
        access = parsed.access
        with self._lock:
            self._refuse_if_locked(access)
            problem = self._problem(parsed, req)
            self._count(access, problem)
        if problem is not None:
            raise _rejection(problem)

    def _refuse_if_locked(self, access: str) -> None:
        until = self._locked_until.get(access)
        if until is None:
            return
        if self._clock() < until:
            raise _rejection(
                f"the access key is locked after {self._lock_after} consecutive failed signatures; "
                f"try again in {until - self._clock():.0f} s"
            )
        del self._locked_until[access]
        self._failures.pop(access, None)

    def _count(self, access: str, problem: str | None) -> None:
        if problem is None:
            self._failures.pop(access, None)
            return
        count = self._failures.get(access, 0) + 1
        self._failures[access] = count
        if count >= self._lock_after:
            self._locked_until[access] = self._clock() + self._lock_seconds

    def _problem(self, parsed: canonical.Credentials, req: Request) -> str | None:
        """Say what is wrong with the signature, or ``None`` when it is right."""
        if not _same(parsed.access, self._ak):
            return "the access key is unknown"
        signed = parsed.signed_headers
        required = {"content-type", "host", "x-sdk-date"} | ({"x-project-id"} & req.headers.keys())
        missing = sorted(required - set(signed)) + sorted(set(signed) - req.headers.keys())
        if missing:
            return f"headers not signed or not sent: {', '.join(missing)}"
        problem = self._date_problem(req.headers["x-sdk-date"]) or _declared_hash_problem(req, signed)
        if problem is not None:
            return problem
        expected = canonical.expected_signature(
            self._sk, req.method, req.target, req.headers, signed, req.body
        )
        return None if _same(parsed.signature, expected) else "verify aksk signature fail"

    def _date_problem(self, value: str) -> str | None:
        try:
            moment = datetime.strptime(value, canonical.DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            return f"X-Sdk-Date {value[:20]!r} is not in {canonical.DATE_FORMAT} form"
        if abs(self._wall_clock() - moment.timestamp()) > self._skew_limit:
            return f"X-Sdk-Date is more than {self._skew_limit:g} s off the server's clock"
        return None
