"""SMNClient's connection settings: from arguments and the environment, validated."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import SplitResult, urlsplit, urlunsplit

from smn_alert._values import invalid, to_bool, to_number
from smn_alert.errors import SMNConfigError

#: The longest timeout accepted (each part): a page that waits longer is better retried, and sockets refuse
#: absurd values (``settimeout(1e10)`` raises OverflowError mid-incident).
MAX_TIMEOUT = 300.0
#: A timeout setting: ``(connect, read)`` seconds, or one number ``t`` meaning ``(t, t)``.
Timeout = Union[float, tuple[float, float]]
#: Seconds to wait for a connection, then for each piece of the answer; a pager must never hang on SMN.
#: One attempt in all (connect, send, the whole answer) may take ``connect + read`` (13.05 s by default).
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
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
# Seconds as text: plain decimals only ("1e3", "1_0" and "inf" are typos here, not timeouts).
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True)
class ConnectionSettings:
    """Where and how SMNClient connects, checked; credentials are left out of ``repr``.

    Build it with :meth:`resolve`, which applies the environment fallbacks and validates.
    """

    #: SMN project id, in the request paths and ``X-Project-Id``.
    project_id: str
    #: Base URL requests go to, without a trailing slash.
    endpoint: str
    #: Access key id, or ``None`` when an IAM token is used.
    ak: str | None = field(repr=False)
    #: Secret key, set exactly when ``ak`` is.
    sk: str | None = field(repr=False)
    #: IAM token sent as ``X-Auth-Token``; used only without AK/SK.
    auth_token: str | None = field(repr=False)
    #: Token of temporary AK/SK, sent as ``X-Security-Token``.
    security_token: str | None = field(repr=False)
    #: requests' timeout: ``(connect, read)`` seconds, or one number for both.
    timeout: Timeout
    #: requests' ``verify``: a bool or the path of a CA bundle file or directory.
    verify: bool | str

    @property
    def host(self) -> str:
        """The ``Host`` header: the endpoint's host and port."""
        return urlsplit(self.endpoint).netloc

    @property
    def read_timeout(self) -> float:
        """Seconds one wait for data may take (each ``recv``): the read part of :attr:`timeout`."""
        return self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout

    @property
    def deadline(self) -> float:
        """Seconds one attempt may take in all: connect + read of :attr:`timeout` (``t`` alone counts twice).

        requests' read timeout bounds each wait for data, not the answer: a server sending one byte a second
        would never trip it. This total bounds the attempt from its start to the end of the answer's body;
        past it the attempt is abandoned like a timeout. It is what requests would allow an answer that is
        not dripped. Not covered: the name lookup (no timeout at all), and the status line and headers,
        whose every read waits at most the read timeout but which a server could drip without end.
        """
        if isinstance(self.timeout, tuple):
            return self.timeout[0] + self.timeout[1]
        return 2 * self.timeout

    @classmethod
    def resolve(
        cls,
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
        environ: Mapping[str, str] | None = None,
    ) -> ConnectionSettings:
        """Fill unset settings from ``environ`` (stripped) and check them all; see :class:`SMNClient`.

        Raises:
            SMNConfigError: A setting is missing or invalid; the message names it, never a secret.
        """
        env = os.environ if environ is None else environ
        given = {"project_id": project_id, "region": region, "endpoint_url": endpoint_url}
        given.update(ak=ak, sk=sk, security_token=security_token)
        settings = {name: _setting(value, env.get(_ENV[name])) for name, value in given.items()}
        checked_project_id = _check_project_id(settings["project_id"])
        endpoint = _resolve_endpoint(settings["region"], settings["endpoint_url"])
        checked_ak, checked_sk, checked_auth_token = _check_credentials(
            settings["ak"], settings["sk"], _setting(auth_token, None)
        )
        return cls(
            project_id=checked_project_id,
            endpoint=endpoint,
            ak=checked_ak,
            sk=checked_sk,
            auth_token=checked_auth_token,
            security_token=_check_header_secret("security_token", settings["security_token"]),
            timeout=_check_timeout(timeout),
            verify=_check_verify(verify),
        )


def endpoint_of(
    region: str | None = None, endpoint_url: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Return the SMN base URL these settings (or the environment) name, or "" when they name none.

    It tells apart the people a pager pages (``shared_state``): the same numbers through another endpoint
    are another target. Unlike :meth:`ConnectionSettings.resolve`, it needs no credentials.
    """
    env = os.environ if environ is None else environ
    region, endpoint_url = (
        _setting(region, env.get(_ENV["region"])),
        _setting(endpoint_url, env.get(_ENV["endpoint_url"])),
    )
    if region is None and endpoint_url is None:
        return ""
    return _resolve_endpoint(region, endpoint_url)


def endpoint_for_region(region: str) -> str:
    """Return SMN's endpoint URL for ``region`` (``cn-north-4`` -> ``https://smn.cn-north-4.myhuaweicloud.com``).

    Raises:
        SMNConfigError: ``region`` does not look like a Huawei Cloud region.
    """
    if not (isinstance(region, str) and _REGION.fullmatch(region)):
        raise invalid("region", region, "must look like cn-north-4 or ap-southeast-1")
    return f"https://smn.{region}.{_REGION_DOMAINS.get(region, 'myhuaweicloud.com')}"


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
        raise invalid("project_id", value, "must be letters and digits (the id from the console)")
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
    why = f"must be seconds > 0 and at most {MAX_TIMEOUT:g}, or a (connect, read) pair of them"
    raise invalid("timeout", value, why)


def _seconds(value: object) -> float | None:
    """Return seconds in (0, ``MAX_TIMEOUT``] from a number or a decimal string, else ``None``."""
    if isinstance(value, str) and not _SECONDS.fullmatch(value.strip()):
        return None
    seconds = to_number(value)
    return seconds if seconds is not None and 0 < seconds <= MAX_TIMEOUT else None


def _check_verify(value: object) -> bool | str:
    """Return ``value`` as requests' ``verify``: a bool (also from words like "false") or an existing path."""
    word = to_bool(value) if isinstance(value, (bool, str)) else None
    if word is not None:
        return word
    if isinstance(value, str) and value and os.path.exists(value):
        return value
    why = "must be true, false or the path of an existing CA bundle file or directory"
    raise invalid("verify", value, why)
