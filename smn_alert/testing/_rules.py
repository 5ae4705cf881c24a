"""``FakeSMNServer``'s SMN rules: which API a request calls, body validation, 200 answers with results.

Bodies are judged by the fake's own table (``_table``), never by the client's ``smn_alert._smn``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from smn_alert.testing import _table as table
from smn_alert.testing._wire import CODE_INVALID, Answer, Rejection, Request, json_answer, new_id

_SMS_PATH = re.compile(r"/v2/([^/]+)/notifications/sms")
_TOPIC_PATH = re.compile(r"/v2/([^/]+)/notifications/topics/([^/]+)/publish")


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
        authenticate: Raises the gateway's rejection for a request it does not accept; ``None`` accepts all.
        refused: Gives the numbers to refuse: ``{endpoint: (code, message)}``.

    Returns:
        The 200 answer, and the accepted message as ``ReceivedMessage`` keyword arguments.

    Raises:
        Rejection: The error answer, when SMN or its gateway would refuse the request.
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
        raise Rejection(404, "APIG.0101", f"The API does not exist: {method} {path[:120]}")
    topic_urn = unquote(found.group(2)) if found.re is _TOPIC_PATH else None
    return Api(unquote(found.group(1)), topic_urn)


def check_project(project_id: str, in_path: str, in_header: str | None) -> None:
    """Refuse with 403 SMN.0001 unless the path's and the header's project ids are ``project_id``."""
    for where, value in (("path", in_path), ("X-Project-Id header", in_header)):
        if value is not None and value != project_id:
            raise Rejection(
                403, "SMN.0001", f"Project id {value[:64]!r} in the {where} is not this server's "
                f"project id {project_id!r}."
            )  # fmt: skip


def json_object(body: bytes) -> dict[str, Any]:
    """Parse ``body`` as a JSON object, else refuse with 400."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Rejection(400, CODE_INVALID, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise Rejection(400, CODE_INVALID, "The request body must be a JSON object.")
    return data


def _enforce(rules: tuple[table.Rule, ...], data: Mapping[str, Any]) -> None:
    """Refuse ``data`` by the first rule of ``rules`` it breaks."""
    for rule in rules:
        if rule.broken(data):
            raise Rejection(rule.status, rule.code, rule.message)


def check_sms(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a SmsBatchPublish body by the fake's table of the seed's rules; return its fields."""
    _enforce(table.SMS_RULES, data)
    named = ("message", "sign_id", "message_include_sign_flag", "extend_code", "extend_src_id")
    return {"endpoints": tuple(data["endpoints"]), **{name: data.get(name) for name in named}}


def check_topic(urn: str, project_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a topic publish by SMN's rules for topics with SMS subscribers; return its fields."""
    if not table.TOPIC_URN.fullmatch(urn) or urn.split(":")[3] != project_id:
        raise Rejection(404, "SMN.0006", "Topic not found.")
    _enforce(table.TOPIC_RULES, data)
    return {"topic_urn": urn, "message": data["message"], "subject": data.get("subject")}


def _endpoint_result(endpoint: str, refused: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    if not table.ENDPOINT_RULE.fullmatch(endpoint):
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
