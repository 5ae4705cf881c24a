"""SMNClient: sign and send SmsBatchPublish and topic-publish requests to Huawei Cloud SMN.

The client says what to send and what the answer means; :mod:`smn_alert._transport` carries the bytes
(signing, the session, the deadline-bounded read) and :mod:`smn_alert._smn` holds the rules fields are
checked by.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from smn_alert import _smn
from smn_alert._client_settings import ConnectionSettings, Timeout
from smn_alert._responses import (
    EndpointResult,
    SmsBatchResult,
    TopicPublishResult,
    chunk_results,
    error_from_response,
    parse_answer,
)
from smn_alert._transport import Transport, version
from smn_alert.errors import SMNConfigError, SMNError, SMNServerError

if TYPE_CHECKING:
    import requests


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
        timeout: ``(connect, read)`` seconds, or one number ``t`` for ``(t, t)``, as numbers or numeric
            strings (INI and environment configs give strings); default :data:`DEFAULT_TIMEOUT`. Connecting
            may take ``connect`` s, each wait for data ``read`` s, and the whole attempt (connect, send, read
            the whole answer) ``connect + read`` s: an answer that comes slower is abandoned like a timeout.
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
        self._settings = ConnectionSettings.resolve(
            project_id=project_id,
            region=region,
            endpoint_url=endpoint_url,
            ak=ak,
            sk=sk,
            security_token=security_token,
            auth_token=auth_token,
            timeout=timeout,
            verify=verify,
            environ=environ,
        )
        self._now = now if now is not None else _utcnow
        self._transport = Transport(self._settings, session, self._now)

    @property
    def endpoint(self) -> str:
        """The base URL requests go to, without a trailing slash."""
        return self._settings.endpoint

    @property
    def project_id(self) -> str:
        """The project id in the request paths."""
        return self._settings.project_id

    def __repr__(self) -> str:
        settings = self._settings
        auth = f"ak={settings.ak[:4] + '***'!r}" if settings.ak is not None else "auth='token'"
        return f"SMNClient(endpoint={settings.endpoint!r}, project_id={settings.project_id!r}, {auth})"

    def __enter__(self) -> SMNClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prepare(self) -> None:
        """Import the HTTP stack now, so that the first page needs no import.

        Importing ``requests`` takes logging's module lock (urllib3 sets up its loggers), and
        ``dictConfig`` holds that lock while it closes old handlers: a first page importing it then
        would wait out the whole shutdown timeout. ``SMNHandler`` calls this when it is built.
        """
        import requests  # noqa: F401  (the import is the point)

        version()

    def close(self) -> None:
        """Close the session this client made (a session passed in is left open); idempotent.

        In a forked child the parent's session is only dropped: closing it takes urllib3's pool locks, which
        the parent's worker may have held at the fork, and could hang the child.
        """
        self._transport.close()

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
        numbers = _smn.check_endpoints(endpoints)
        options = _smn.sms_options(sign_id, message_include_sign_flag, extend_code, extend_src_id)
        return self._send_sms(numbers, _smn.check_sms_message(message, options), options)

    def publish_to_topic(
        self, topic_urn: str, message: str, *, subject: str | None = None
    ) -> TopicPublishResult:
        """Publish ``message`` to a topic (its SMS subscribers get it as text).

        Raises:
            SMNConfigError: A field is invalid, or the message holds ``[]``/``【】`` (SMN refuses them).
            SMNError: SMN refused the request or could not be reached.
        """
        urn = _smn.check_topic_urn(topic_urn)
        text = _smn.check_topic_message(message)
        return self._send_to_topic(urn, text, _smn.check_subject(subject))

    # --- checked requests: the senders check their fields once, when built, then send pages through these
    def _send_sms(self, numbers: Sequence[str], text: str, options: Mapping[str, str]) -> SmsBatchResult:
        """Send ``text`` to ``numbers`` as :meth:`publish_sms` does, all fields already checked.

        ``numbers`` are distinct (:func:`_smn.check_endpoints`), ``options`` come from
        :func:`_smn.sms_options` and ``text`` from :func:`_smn.check_sms_message`.
        """
        path = f"/v2/{self._settings.project_id}/notifications/sms"
        results: list[EndpointResult] = []
        request_ids: list[str] = []
        size = _smn.MAX_ENDPOINTS_PER_REQUEST
        for start in range(0, len(numbers), size):
            chunk = numbers[start : start + size]
            try:
                data, request_id = self._post(path, {"endpoints": chunk, "message": text, **options})
                results.extend(chunk_results(chunk, data, request_id))
            except SMNError as exc:
                if start == 0:
                    raise
                results.extend(EndpointResult(number, code=exc.code, message=exc.message) for number in chunk)
                request_id = exc.request_id
            if request_id:
                request_ids.append(request_id)
        return SmsBatchResult(tuple(results), tuple(request_ids))

    def _send_to_topic(self, urn: str, text: str, subject: str | None) -> TopicPublishResult:
        """Publish ``text`` as :meth:`publish_to_topic` does, all fields already checked."""
        payload = {"message": text} if subject is None else {"message": text, "subject": subject}
        path = f"/v2/{self._settings.project_id}/notifications/topics/{quote(urn, safe='')}/publish"
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
        status, headers, content = self._transport.send(self._settings.endpoint + path, body)
        if not 200 <= status < 300:
            raise error_from_response(status, headers, content, now=self._now())
        return parse_answer(status, headers, content)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)
