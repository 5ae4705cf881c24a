"""What the fleet keeps in the shared store about its pages: ids, samples, and the page of a claimed digest.

Nothing secret leaves the process: a target is a hash of the numbers or topic, endpoint and prefix; a kind
is a hash of its fingerprint; a sample is the kind's page fields already redacted, as compact JSON. A claimed
digest (``_store.Claim``) is composed by :func:`compose_claim` exactly as a local digest would be, saying how
many processes and hosts its counts come from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import replace
from re import Pattern
from typing import Optional

from smn_alert._alert import Alert, Fingerprint, level_band
from smn_alert._compose import GroupSummary, PageContext, compose
from smn_alert._store import MAX_SAMPLE_CHARS, OTHER_KINDS, Claim, KindCount
from smn_alert._text import DEFAULT_REDACTIONS, redact

#: Hex characters of a target or kind id (128 bits of sha256).
ID_CHARS = 32
# Longest text of each sample field before it is fitted under MAX_SAMPLE_CHARS (a page shows <= 490).
_FIELD_CAPS = {
    "levelname": 32,
    "logger": 200,
    "message": 600,
    "exc_type": 200,
    "exc_value": 300,
    "where": 200,
}


def _digest(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:ID_CHARS]


def target_key(
    *, numbers: Iterable[str] = (), topic_urn: Optional[str] = None, endpoint: str, prefix: str = ""
) -> str:
    """Return the store key of "the people a pager pages": a hash, so no number is ever stored in clear.

    Two pagers share state when they page the same numbers (in any order) or the same topic, through the
    same SMN endpoint, with the same prefix (a different prefix is a different service's pages).
    """
    who: list[str] = ["topic", topic_urn] if topic_urn else ["numbers", *sorted({n.strip() for n in numbers})]
    return _digest(["smn_alert/1", who, endpoint.strip().rstrip("/"), prefix])


def kind_id(fingerprint: Fingerprint) -> str:
    """Return a kind's id in the store: a hash of its fingerprint (templates and loggers are not stored)."""
    return _digest(list(fingerprint))


# --- samples --------------------------------------------------------------------------------------------
def _utf8(text: str) -> str:
    """Text any store can hold: a lone surrogate (not encodable as UTF-8) becomes ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


def encode_sample(alert: Alert, redactions: Sequence[Pattern[str]] = DEFAULT_REDACTIONS) -> str:
    """Write the text fields a page shows of ``alert``, redacted, as compact JSON of <= MAX_SAMPLE_CHARS.

    Redaction runs on the whole text before any cut, so a secret is never cut in half and missed. The
    template is not kept (only its hash is, in the kind id). Call it once per kind, not once per alert.
    """
    fields = {
        "levelname": _utf8(str(alert.levelname)),
        "logger": redact(_utf8(alert.logger), redactions),
        "message": redact(_utf8(alert.message), redactions),
        "exc_type": redact(_utf8(alert.exc_type), redactions),
        "exc_value": redact(_utf8(alert.exc_value), redactions),
        "where": redact(_utf8(alert.exc_where), redactions),
    }
    fields = {name: text[: _FIELD_CAPS[name]] for name, text in fields.items()}
    created = alert.created if math.isfinite(alert.created) else 0.0
    while True:
        encoded = json.dumps(
            [alert.levelno, *fields.values(), created], ensure_ascii=False, separators=(",", ":")
        )
        if len(encoded) <= MAX_SAMPLE_CHARS:
            return encoded
        longest = max(fields, key=lambda name: len(fields[name]))
        fields[longest] = fields[longest][: len(fields[longest]) * 3 // 4]


def decode_sample(text: str) -> Optional[Alert]:
    """Read a sample back as an :class:`Alert` (its message stands for the template); None if unreadable."""
    try:
        level, levelname, logger, message, exc_type, exc_value, where, created = json.loads(text)
        return Alert(
            int(level), str(levelname), str(logger), str(message), str(message),
            str(exc_type), str(exc_value), str(where), float(created),
        )  # fmt: skip
    except (ValueError, TypeError):
        return None


def _claim_alert(kind: KindCount) -> Alert:
    """Return the alert a digest line shows for one claimed kind: its sample, or a stand-in."""
    if kind.kind == OTHER_KINDS:
        band = level_band(kind.level)
        said = f"alerts of {kind.merged:,} other {'kind' if kind.merged == 1 else 'kinds'}"
        return Alert(band, logging.getLevelName(band), "", OTHER_KINDS, said, created=kind.first_seen)
    return decode_sample(kind.sample) or stand_in(kind.level, kind.first_seen)


def stand_in(level: int, created: float) -> Alert:
    """Return the alert shown for counts whose sample could not be read back."""
    return Alert(
        level, logging.getLevelName(level), "", "", "alerts whose text was not kept", created=created
    )


def claim_groups(claim: Claim) -> list[GroupSummary]:
    """Turn a claim's counts into the composer's groups; their counts add up to ``claim.total``."""
    return [
        GroupSummary(_claim_alert(kind), kind.count, kind.first_seen, kind.last_seen) for kind in claim.kinds
    ]


def compose_claim(claim: Claim, context: PageContext) -> str:
    """Compose the page of a claimed digest, as a local one would read, saying how many processes sent it.

    ``context`` gives the prefix, length, redactions, time format and this process's own footers (dropped,
    undelivered); the claim gives processes, hosts and, when the fleet's budget held a page back, since when.
    """
    held = claim.held_since is not None
    context = replace(
        context,
        processes=max(1, claim.processes),
        hosts=max(1, claim.hosts),
        held_back=claim.total if held else context.held_back,
        held_since=claim.held_since if held else context.held_since,
    )
    return compose(claim_groups(claim), context)
