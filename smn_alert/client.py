"""SMNClient: sign and send SmsBatchPublish and topic-publish requests to Huawei Cloud SMN."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from smn_alert import fields, signer
from smn_alert.answers import (
    MISSING_CODE,
    EndpointResult,
    SmsBatchResult,
    TopicPublishResult,
    chunk_results,
    error_from_response,
    parse_answer,
    parse_retry_after,
)
from smn_alert.errors import SMNConfigError, SMNConnectionError, SMNError, SMNServerError

if TYPE_CHECKING:
    import requests

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_TIMEOUT",
    "ENV_AK",
    "ENV_ENDPOINT_URL",
    "ENV_PROJECT_ID",
    "ENV_REGION",
    "ENV_SECURITY_TOKEN",
    "ENV_SK",
    "MISSING_CODE",
    "EndpointResult",
    "SMNClient",
    "SmsBatchResult",
    "Timeout",
    "TopicPublishResult",
    "endpoint_for_region",
    "error_from_response",
    "parse_retry_after",
]

#: A requests timeout: seconds for the whole wait, or ``(connect, read)`` seconds.
Timeout = Union[float, tuple[float, float]]
#: Seconds to wait for a connection, then for the answer; a pager must never hang on SMN.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
#: The content type SMN expects; it is signed, so it is sent exactly like this.
CONTENT_TYPE = "application/json;charset=UTF-8"
#: Environment variable holding the access key id, read when ``ak`` is not given.
ENV_AK = "HUAWEICLOUD_SDK_AK"
#: Environment variable holding the secret key, read when ``sk`` is not given.
ENV_SK = "HUAWEICLOUD_SDK_SK"
#: Environment variable holding the project id, read when ``project_id`` is not given.
ENV_PROJECT_ID = "HUAWEICLOUD_SDK_PROJECT_ID"
#: Environment variable holding the token of temporary AK/SK, read when ``security_token`` is not given.
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
#: Environment variable holding the region, read when ``region`` is not given.
ENV_REGION = "HUAWEICLOUD_SDK_REGION"
#: Environment variable holding the base URL, read when ``endpoint_url`` is not given.
ENV_ENDPOINT_URL = "SMN_ALERT_ENDPOINT_URL"

_ENV = {
    "ak": ENV_AK,
    "sk": ENV_SK,
    "project_id": ENV_PROJECT_ID,
    "security_token": ENV_SECURITY_TOKEN,
    "region": ENV_REGION,
    "endpoint_url": ENV_ENDPOINT_URL,
}
# Regions whose SMN endpoint is not under myhuaweicloud.com (Huawei's SDK region tables).
_REGION_DOMAINS = {"cn-north-2": "myhuaweicloud.cn", "eu-west-101": "myhuaweicloud.eu"}
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,3}")
_PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
_AK = re.compile(r"[A-Za-z0-9_\-.]{1,128}")
# Header values: printable ASCII without spaces, so a pasted newline cannot inject a header
# (and requests cannot quote the secret back in its own InvalidHeader message).
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_VERIFY_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")
_TOPIC_FORBIDDEN = "[]【】"


class SMNClient:
    """Send SMS through Huawei Cloud SMN, signing each request with AK/SK (or an IAM token).

    Used by one thread at a time. The ``requests`` session is made on the first request, and made
    afresh in a forked child so that parent and child never share pooled sockets.

    Args:
        project_id: SMN project id (``HUAWEICLOUD_SDK_PROJECT_ID``).
        region: Region such as ``cn-north-4`` (``HUAWEICLOUD_SDK_REGION``); gives the endpoint.
        endpoint_url: Base URL overriding ``region`` (``SMN_ALERT_ENDPOINT_URL``), e.g. a FakeSMNServer.
        ak: Access key (``HUAWEICLOUD_SDK_AK``).
        sk: Secret key (``HUAWEICLOUD_SDK_SK``).
        security_token: Token of temporary AK/SK (``HUAWEICLOUD_SDK_SECURITY_TOKEN``).
        auth_token: IAM token sent as ``X-Auth-Token``; used only when no AK/SK is configured.
        timeout: Seconds, or ``(connect, read)`` seconds, as numbers or numeric strings (INI and
            environment configs give strings); default :data:`DEFAULT_TIMEOUT`.
        verify: TLS verification: a bool, ``"true"``/``"false"``/``"1"``/``"0"``/``"yes"``/``"no"``
            (any case), or the path of an existing CA bundle file or directory.
        session: A ``requests.Session`` to use; the client never closes it.
        environ: Where unset settings are looked up (values are stripped); default ``os.environ``.
        now: Clock giving an aware UTC ``datetime`` for ``X-Sdk-Date``.

    Raises:
        SMNConfigError: A setting is missing or invalid; the message names it, never a secret.
    """

    def __init__(
        self,
        *,
        project_id: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        security_token: str | None = None,
        auth_token: str | None = None,
        timeout: Timeout | str | Sequence[float | str] | None = None,
        verify: bool | str = True,
        session: requests.Session | None = None,
        environ: Mapping[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        given = {"project_id": project_id, "region": region, "endpoint_url": endpoint_url}
        given.update(ak=ak, sk=sk, security_token=security_token)
        settings = {name: _setting(value, env.get(_ENV[name])) for name, value in given.items()}
        self._project_id = _check_project_id(settings["project_id"])
        self._endpoint = _resolve_endpoint(settings["region"], settings["endpoint_url"])
        self._host = urlsplit(self._endpoint).netloc
        self._ak, self._sk, self._auth_token = _check_credentials(
            settings["ak"], settings["sk"], _setting(auth_token, None)
        )
        self._security_token = _check_header_secret("security_token", settings["security_token"])
        self._timeout = _check_timeout(timeout)
        self._verify = _check_verify(verify)
        self._now = now if now is not None else _utcnow
        self._session = session
        self._owns_session = False
        self._session_pid = os.getpid()

    @property
    def endpoint(self) -> str:
        """The base URL requests go to, without a trailing slash."""
        return self._endpoint

    @property
    def project_id(self) -> str:
        """The project id in the request paths."""
        return self._project_id

    def __repr__(self) -> str:
        auth = f"ak={self._ak[:4] + '***'!r}" if self._ak is not None else "auth='token'"
        return f"SMNClient(endpoint={self._endpoint!r}, project_id={self._project_id!r}, {auth})"

    def __enter__(self) -> SMNClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session this client made (a session passed in is left open); idempotent.

        In a forked child the parent's session is only dropped, like in :meth:`_get_session`: closing it takes
        urllib3's pool locks, which the parent's worker may have held at the fork, and could hang the child.
        """
        if self._owns_session and self._session is not None:
            if os.getpid() == self._session_pid:
                self._session.close()
            self._session = None

    def publish_sms(
        self,
        endpoints: Iterable[str],
        message: str,
        *,
        sign_id: str | None = None,
        message_include_sign_flag: bool | str | None = None,
        extend_code: str | None = None,
        extend_src_id: str | None = None,
    ) -> SmsBatchResult:
        """Send ``message`` to ``endpoints`` with SmsBatchPublish, at most 1000 numbers per request.

        Numbers are de-duplicated by exact string. When a request after the first fails, its numbers
        are reported as failed with that error's code and message, so numbers already paged are never
        paged again by a retry of the whole call.

        Args:
            endpoints: Phone numbers.
            message: At most 490 characters; with the flag, it starts with the signature in 【】.
            sign_id: Id of an approved signature; SMN puts it in front of the message.
            message_include_sign_flag: ``True``/``"true"``: the message carries its signature.
            extend_code: Up to 32 bytes echoed in delivery reports.
            extend_src_id: Sender extension, 1 to 8 digits.

        Returns:
            One :class:`EndpointResult` per distinct number, in the order given.

        Raises:
            SMNConfigError: A field is invalid (nothing was sent).
            SMNError: The first request failed.
        """
        numbers = fields.check_endpoints(endpoints)
        extra = _sms_fields(message, sign_id, message_include_sign_flag, extend_code, extend_src_id)
        path = f"/v2/{self._project_id}/notifications/sms"
        results: list[EndpointResult] = []
        request_ids: list[str] = []
        size = fields.MAX_ENDPOINTS_PER_REQUEST
        for start in range(0, len(numbers), size):
            chunk = numbers[start : start + size]
            try:
                data, request_id = self._post(path, {"endpoints": chunk, **extra})
                results.extend(chunk_results(chunk, data, request_id))
            except SMNError as exc:
                if start == 0:
                    raise
                results.extend(EndpointResult(number, code=exc.code, message=exc.message) for number in chunk)
                request_id = exc.request_id
            if request_id:
                request_ids.append(request_id)
        return SmsBatchResult(tuple(results), tuple(request_ids))

    def publish_to_topic(
        self, topic_urn: str, message: str, *, subject: str | None = None
    ) -> TopicPublishResult:
        """Publish ``message`` to a topic (its SMS subscribers get it as text).

        Raises:
            SMNConfigError: A field is invalid, or the message holds ``[]``/``【】`` (SMN refuses them).
            SMNError: SMN refused the request or could not be reached.
        """
        urn = fields.check_topic_urn(topic_urn)
        text = fields.check_message(message)
        if any(char in text for char in _TOPIC_FORBIDDEN):
            raise SMNConfigError(
                "message must not contain [ ] 【 】 when published to a topic (SMN refuses it)"
            )
        payload = {"message": text}
        checked_subject = fields.check_subject(subject)
        if checked_subject is not None:
            payload["subject"] = checked_subject
        path = f"/v2/{self._project_id}/notifications/topics/{quote(urn, safe='')}/publish"
        data, request_id = self._post(path, payload)
        message_id = data.get("message_id")
        if not isinstance(message_id, str):
            raise SMNServerError(
                "malformed answer from SMN: no message_id", status=200, request_id=request_id
            )
        return TopicPublishResult(message_id, request_id)

    def _post(self, path: str, payload: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """POST ``payload`` as compact UTF-8 JSON; return the answer's JSON object and request id."""
        try:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except UnicodeEncodeError:
            raise SMNConfigError("request fields hold text that is not valid Unicode") from None
        response = self._send(self._endpoint + path, body)
        status, headers, content = response.status_code, response.headers, response.content
        if not 200 <= status < 300:
            raise error_from_response(status, headers, content, now=self._now())
        return parse_answer(status, headers, content)

    def _send(self, url: str, body: bytes) -> requests.Response:
        """Send one signed request; turn every failure to get an answer into :class:`SMNConnectionError`.

        That covers network errors, TLS, a malformed proxy setting (``InvalidURL``) and a missing CA bundle
        (``OSError``). The message names the exception type only: its text can hold a proxy URL's password.
        """
        import requests  # (`import smn_alert` must stay free of requests)

        session = self._get_session()
        try:
            return session.post(
                url,
                data=body,
                headers=self._headers(url, body),
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except (requests.RequestException, OSError) as exc:
            error = SMNConnectionError(
                f"cannot reach SMN at {self._host}: {_why_unreachable(exc)} ({type(exc).__name__})"
            )
            # A traceback prints the cause's text too: for proxy errors that may be user:password@proxy.
            proxy_trouble = (requests.exceptions.ProxyError, requests.exceptions.InvalidURL)
            raise error from (None if isinstance(exc, proxy_trouble) else exc)

    def _headers(self, url: str, body: bytes) -> dict[str, str]:
        """Return the request headers, signed with AK/SK or carrying the IAM token."""
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-Project-Id": self._project_id,
            "X-Sdk-Date": signer.sdk_date(self._now()),
        }
        if self._security_token is not None:
            headers["X-Security-Token"] = self._security_token
        if self._ak is not None and self._sk is not None:
            headers["Authorization"] = signer.authorization_header(
                self._ak, self._sk, "POST", url, headers, body, signed_headers=list(headers)
            )
        elif self._auth_token is not None:
            headers["X-Auth-Token"] = self._auth_token
        headers["User-Agent"] = f"smn-alert/{_version()}"
        return headers

    def _get_session(self) -> requests.Session:
        """Return the session, making one on first use and again in a forked child."""
        pid = os.getpid()
        if self._session is not None and self._session_pid == pid:
            return self._session
        import requests  # (`import smn_alert` must stay free of requests)

        # In a forked child, abandon the parent's session without closing it: closing takes urllib3's pool
        # locks, which the parent's worker may have held at the fork, and would deadlock the child.
        self._session, self._owns_session, self._session_pid = requests.Session(), True, pid
        return self._session


def endpoint_for_region(region: str) -> str:
    """Return SMN's endpoint URL for ``region`` (``cn-north-4`` -> ``https://smn.cn-north-4.myhuaweicloud.com``).

    Raises:
        SMNConfigError: ``region`` does not look like a Huawei Cloud region.
    """
    if not (isinstance(region, str) and _REGION.fullmatch(region)):
        raise SMNConfigError(f"region={region!r:.40}: must look like cn-north-4 or ap-southeast-1")
    return f"https://smn.{region}.{_REGION_DOMAINS.get(region, 'myhuaweicloud.com')}"


def _sms_fields(
    message: object, sign_id: object, flag: object, extend_code: object, extend_src_id: object
) -> dict[str, str]:
    """Validate the SmsBatchPublish fields other than ``endpoints``; keep only those that are set."""
    text = fields.check_message(message)
    checked_sign, checked_flag = fields.check_sign(sign_id, flag)
    candidates = {
        "message": text,
        "sign_id": checked_sign,
        "message_include_sign_flag": checked_flag,
        "extend_code": fields.check_extend_code(extend_code),
        "extend_src_id": fields.check_extend_src_id(extend_src_id),
    }
    if checked_flag == "true" and not _SIGNATURE_HEAD.match(text):
        raise SMNConfigError(
            "message must start with its signature in 【】 when message_include_sign_flag is true"
        )
    return {name: value for name, value in candidates.items() if value is not None}


def _setting(value: str | None, fallback: str | None) -> str | None:
    """Return the given value, else the environment's, stripped; an empty string counts as unset."""
    if value is not None and value != "":
        return value
    # A value pasted into the environment often brings a newline; sent as is, an SK gives 401s that count
    # toward the gateway's lock-out after five bad signatures.
    stripped = fallback.strip() if isinstance(fallback, str) else None
    return stripped if stripped else None


def _check_project_id(value: str | None) -> str:
    if value is None:
        raise SMNConfigError("project_id is required (or set HUAWEICLOUD_SDK_PROJECT_ID)")
    if not (isinstance(value, str) and _PROJECT_ID.fullmatch(value)):
        raise SMNConfigError(
            f"project_id={value!r:.70}: must be letters and digits (the id from the console)"
        )
    return value


def _resolve_endpoint(region: str | None, endpoint_url: str | None) -> str:
    """Return the base URL: ``endpoint_url`` if set, else the region's endpoint."""
    from_region = endpoint_for_region(region) if region is not None else None
    if endpoint_url is None:
        if from_region is None:
            raise SMNConfigError("region or endpoint_url is required (or set HUAWEICLOUD_SDK_REGION)")
        return from_region
    if not isinstance(endpoint_url, str) or "@" in endpoint_url:
        raise SMNConfigError("endpoint_url must be an http(s) URL without user info")
    try:
        parts = urlsplit(endpoint_url.strip())
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SMNConfigError(
            f"endpoint_url={_shown_url(parts)!r:.80}: must be http(s)://host[:port][/path], "
            "without query or fragment"
        )
    return endpoint_url.strip().rstrip("/")


def _shown_url(parts: SplitResult) -> str:
    """Return scheme://host/path only: a query or fragment may hold a token (``?access_token=...``)."""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _check_credentials(
    ak: str | None, sk: str | None, auth_token: str | None
) -> tuple[str | None, str | None, str | None]:
    """Check that AK and SK come together, or that an IAM token is given; values never enter messages."""
    if ak is not None and sk is None:
        raise SMNConfigError("ak is set but sk is missing (or set HUAWEICLOUD_SDK_SK)")
    if sk is not None and ak is None:
        raise SMNConfigError("sk is set but ak is missing (or set HUAWEICLOUD_SDK_AK)")
    if ak is None and auth_token is None:
        raise SMNConfigError("credentials are required: ak and sk (HUAWEICLOUD_SDK_AK/_SK), or auth_token")
    for name, key in (("ak", ak), ("sk", sk)):
        if isinstance(key, str) and any(char.isspace() for char in key):
            raise SMNConfigError(f"{name} must not contain spaces or line breaks (pasted with the key?)")
    if ak is not None and not (isinstance(ak, str) and _AK.fullmatch(ak)):
        raise SMNConfigError("ak must be the access key id (letters and digits)")
    if sk is not None and not (isinstance(sk, str) and sk):
        raise SMNConfigError("sk must be a non-empty string")
    return ak, sk, _check_header_secret("auth_token", auth_token)


def _check_header_secret(name: str, value: str | None) -> str | None:
    if value is not None and not (isinstance(value, str) and _HEADER_TOKEN.fullmatch(value)):
        raise SMNConfigError(f"{name} must be printable ASCII without spaces or line breaks")
    return value


def _check_timeout(value: object) -> Timeout:
    """Return ``value`` as requests' timeout: seconds, or a ``(connect, read)`` pair; strings are parsed."""
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, (tuple, list)) and len(value) == 2:
        connect, read = _seconds(value[0]), _seconds(value[1])
        if connect is not None and read is not None:
            return (connect, read)
    seconds = _seconds(value)
    if seconds is not None:
        return seconds
    raise SMNConfigError(f"timeout={value!r:.40}: must be seconds > 0 or a (connect, read) pair of them")


def _seconds(value: object) -> float | None:
    """Return a positive finite number of seconds from a number or a decimal string, else ``None``."""
    if isinstance(value, str) and _SECONDS.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _check_verify(value: object) -> bool | str:
    """Return ``value`` as requests' ``verify``: a bool (also from words like "false") or an existing path."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = _VERIFY_WORDS.get(value.strip().lower())
        if word is not None:
            return word
        if value and os.path.exists(value):
            return value
    raise SMNConfigError(
        f"verify={value!r:.60}: must be true, false or the path of an existing CA bundle file or directory"
    )


def _why_unreachable(exc: Exception) -> str:
    """Say why no answer came, without the exception text (it can hold proxy URLs with passwords)."""
    import requests  # (`import smn_alert` must stay free of requests)

    reasons: tuple[tuple[type[BaseException], str], ...] = (
        (requests.exceptions.SSLError, "TLS handshake or certificate check failed"),
        (requests.ConnectTimeout, "connection timed out"),
        (requests.Timeout, "no answer in time"),
        (requests.exceptions.ChunkedEncodingError, "connection broke while reading the answer"),
        (requests.ConnectionError, "connection failed (refused, reset or DNS)"),
        (requests.exceptions.InvalidURL, "invalid URL or proxy setting (check *_PROXY)"),
        (requests.RequestException, "request failed"),
    )
    fallback = "local error (a CA bundle or certificate file?)"
    return next((why for kind, why in reasons if isinstance(exc, kind)), fallback)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@lru_cache(maxsize=1)
def _version() -> str:
    """Return the installed smn-alert version, read without importing the package."""
    from importlib import metadata  # (only needed for the first request)

    try:
        return metadata.version("smn-alert")
    except metadata.PackageNotFoundError:
        return "0+unknown"
