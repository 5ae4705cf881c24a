"""``FakeSMNServer``'s SMN rules: which API a request calls, body validation, 200 answers with results."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from smn_alert import fields
from smn_alert._fake_wire import CODE_INVALID, Answer, Refusal, Request, json_answer, new_id
from smn_alert.errors import SMNConfigError

__all__ = [
    "Api",
    "check_project",
    "check_sms",
    "check_topic",
    "json_object",
    "match_api",
    "serve",
    "sms_results",
]

_TOPIC_FORBIDDEN = ("[", "]", "【", "】")
_SMS_PATH = re.compile(r"/v2/([^/]+)/notifications/sms")
_TOPIC_PATH = re.compile(r"/v2/([^/]+)/notifications/topics/([^/]+)/publish")
_SIGNATURE_HEAD = re.compile(r"【[^【】]+】")


def serve(
    req: Request,
    project_id: str,
    authenticate: Callable[[Request], None] | None,
    refused: Callable[[], Mapping[str, tuple[str, str]]],
) -> tuple[Answer, dict[str, Any]]:
    """Answer ``req`` as SMN would, and return the fields of the message it accepts.

    Args:
        req: The request.
        project_id: The server's project id.
        authenticate: Raises the gateway's refusal for a request it does not accept; ``None`` accepts all.
        refused: Gives the numbers to refuse: ``{endpoint: (code, message)}``.

    Returns:
        The 200 answer, and the accepted message as ``ReceivedMessage`` keyword arguments.

    Raises:
        Refusal: The error answer, when SMN or its gateway would refuse the request.
    """
    api = match_api(req.method, req.target)
    if authenticate is not None:
        authenticate(req)
    check_project(project_id, api.project_id, req.headers.get("x-project-id"))
    data = json_object(req.body)
    if api.topic_urn is not None:
        topic = check_topic(api.topic_urn, project_id, data)
        return json_answer(200, {"request_id": req.request_id, "message_id": new_id()}), topic
    sms = check_sms(data)
    results = sms_results(sms["endpoints"], refused())
    sms["delivered"] = tuple(entry["endpoint"] for entry in results if "message_id" in entry)
    sms["refused"] = tuple((entry["endpoint"], entry["code"]) for entry in results if "code" in entry)
    return json_answer(200, {"request_id": req.request_id, "result": results}), sms


@dataclass(frozen=True)
class Api:
    """The API a request is for: the project id in its path and, for a topic publish, the topic URN."""

    project_id: str
    topic_urn: str | None  # None: SmsBatchPublish


def match_api(method: str, target: str) -> Api:
    """Say which API ``method target`` calls (ids percent-decoded), or raise the gateway's 404."""
    path = urlsplit(target).path
    found = _SMS_PATH.fullmatch(path) or _TOPIC_PATH.fullmatch(path)
    if method != "POST" or found is None:
        raise Refusal(404, "APIG.0101", f"The API does not exist: {method} {path[:120]}")
    topic_urn = unquote(found.group(2)) if found.re is _TOPIC_PATH else None
    return Api(unquote(found.group(1)), topic_urn)


def check_project(project_id: str, in_path: str, in_header: str | None) -> None:
    """Refuse with 403 SMN.0001 unless the path's and the header's project ids are ``project_id``."""
    for where, value in (("path", in_path), ("X-Project-Id header", in_header)):
        if value is not None and value != project_id:
            raise Refusal(
                403, "SMN.0001", f"Project id {value[:64]!r} in the {where} is not this server's "
                f"project id {project_id!r}."
            )  # fmt: skip


def json_object(body: bytes) -> dict[str, Any]:
    """Parse ``body`` as a JSON object, else refuse with 400."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Refusal(400, CODE_INVALID, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Refusal(400, CODE_INVALID, "The request body must be a JSON object.")
    return data


def _checked(status: int, code: str, check: Callable[[], Any]) -> Any:
    """Run a ``fields`` check and turn its ``SMNConfigError`` into an SMN error answer."""
    try:
        return check()
    except SMNConfigError as exc:
        raise Refusal(status, code, str(exc)) from None


def _check_endpoints(value: object) -> list[str]:
    if not (isinstance(value, list) and value and all(isinstance(item, str) for item in value)):
        raise Refusal(
            400, "SMN.0012", "Parameter: endpoints must be a non-empty list of phone-number strings."
        )
    if len(value) > fields.MAX_ENDPOINTS_PER_REQUEST:
        raise Refusal(
            400,
            "SMN.0159",
            f"{len(value)} endpoints; at most {fields.MAX_ENDPOINTS_PER_REQUEST} per request.",
        )
    return value


def _check_flag(value: object) -> str | None:
    if isinstance(value, bool):
        raise Refusal(
            400,
            CODE_INVALID,
            'message_include_sign_flag must be the string "true" or "false", not a JSON boolean.',
        )
    if value is not None and value not in ("true", "false"):
        raise Refusal(400, CODE_INVALID, 'message_include_sign_flag must be the string "true" or "false".')
    return value


def check_sms(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a SmsBatchPublish body by the seed's rules; return its fields."""
    endpoints = _check_endpoints(data.get("endpoints"))
    message = _checked(403, "SMN.0009", lambda: fields.check_message(data.get("message")))
    flag, sign_id = _check_flag(data.get("message_include_sign_flag")), data.get("sign_id")
    if flag == "true" and not _SIGNATURE_HEAD.match(message):
        raise Refusal(
            403, "SMN.0009", 'With message_include_sign_flag "true" the message must start with 【sign】.'
        )
    if flag != "true" or sign_id is not None:
        _checked(400, "SMN.0080", lambda: fields.check_sign(sign_id, None))
    extend_code = _checked(400, CODE_INVALID, lambda: fields.check_extend_code(data.get("extend_code")))
    src_id = data.get("extend_src_id")
    if src_id is not None and not isinstance(src_id, str):
        raise Refusal(400, CODE_INVALID, "extend_src_id must be a string of 1 to 8 digits.")
    _checked(400, CODE_INVALID, lambda: fields.check_extend_src_id(src_id))
    return {
        "endpoints": tuple(endpoints), "message": message, "sign_id": sign_id,
        "message_include_sign_flag": flag, "extend_code": extend_code, "extend_src_id": src_id,
    }  # fmt: skip


def check_topic(urn: str, project_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a topic publish by SMN's rules for topics with SMS subscribers; return its fields."""
    try:
        fields.check_topic_urn(urn)
    except SMNConfigError:
        raise Refusal(404, "SMN.0006", "Topic not found.") from None
    if urn.split(":")[3] != project_id:
        raise Refusal(404, "SMN.0006", "Topic not found.")
    message = _checked(403, "SMN.0009", lambda: fields.check_message(data.get("message")))
    if any(char in message for char in _TOPIC_FORBIDDEN):
        raise Refusal(400, CODE_INVALID, "A message published to a topic must not contain [ ] 【 】.")
    subject = _checked(400, CODE_INVALID, lambda: fields.check_subject(data.get("subject")))
    return {"topic_urn": urn, "message": message, "subject": subject}


def _endpoint_result(endpoint: str, refused: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    try:
        fields.check_endpoint(endpoint)
    except SMNConfigError:
        return {"endpoint": endpoint, "code": "SMN.0160", "message": "Invalid phone number."}
    if endpoint in refused:
        code, message = refused[endpoint]
        return {"endpoint": endpoint, "code": code, "message": message}
    return {"endpoint": endpoint, "message_id": new_id()}


def sms_results(endpoints: tuple[str, ...], refused: Mapping[str, tuple[str, str]]) -> list[dict[str, str]]:
    """One result per endpoint, in order; a repeated number gets SMN.0190 like the seed's sample answer."""
    seen: set[str] = set()
    results = []
    for endpoint in endpoints:
        if endpoint in seen:
            results.append(
                {"endpoint": endpoint, "code": "SMN.0190", "message": "This endpoint already exists."}
            )
        else:
            seen.add(endpoint)
            results.append(_endpoint_result(endpoint, refused))
    return results
