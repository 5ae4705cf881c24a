"""The ledger: every counter ``stats()`` reports, in one object, and the view that adds them up.

The pager writes what became of the alerts it took in (sent, folded, suppressed, dropped, failed, ...); the
hand-over buffer writes the alerts logged after close (``late``). Alerts still in the buffer are not counted
here yet: :meth:`Ledger.stats` is handed how many there are, and counts them as received and pending.

Every alert ends in exactly one counter, so ``received == sent + folded + suppressed + dropped + failed +
pending + handed``: ``sent`` (it headed a kind in a delivered SMS), ``folded`` (it was counted in one),
``suppressed`` (counted in one that the SMS budget delayed), ``dropped`` (the buffer was full, or it came
after close), ``failed`` (its SMS could not be delivered), ``handed`` (counted into the digest the processes
sharing state send together: whichever of them claims it sends it), or it is still ``pending``.

A new counter goes here (a field, and a line in :meth:`Ledger.stats`), and is written where it happens.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class Ledger:
    """The counters behind ``stats()``; written by the pager (on the worker) and the buffer (late alerts).

    Attributes:
        received: Alerts the pager took in (the buffer's and the late ones are added in :meth:`stats`).
        sent: Alerts that headed a kind in a delivered SMS.
        folded: Alerts counted in a delivered SMS.
        suppressed: Alerts counted in a delivered SMS that the budget had held back.
        dropped: Alerts that met a full buffer (their kind and count kept, their text not).
        failed: Alerts whose SMS could not be delivered.
        retried: Sends tried again.
        pages: SMS delivered.
        segments: Billed segments, summed over recipients.
        refused: Recipients SMN refused in an otherwise delivered SMS.
        delivered: SMS per recipient (numbers masked).
        last_error: What went wrong last, scrubbed, or None.
        late: Alerts logged after close and not paged (counted as received and dropped).
        handed: Alerts handed to the shared digest of the processes paging the same people (``shared_state``).
    """

    received: int = 0
    sent: int = 0
    folded: int = 0
    suppressed: int = 0
    dropped: int = 0
    failed: int = 0
    retried: int = 0
    pages: int = 0
    segments: int = 0
    refused: int = 0
    delivered: dict[str, int] = dataclasses.field(default_factory=dict)
    last_error: Optional[str] = None
    late: int = 0
    handed: int = 0

    def total_received(self, queued: int) -> int:
        """Alerts received in all, with ``queued`` ones handed over and not taken in by the pager yet."""
        return self.received + queued + self.late

    def stats(self, *, queued: int, pending: int) -> dict[str, object]:
        """Return the counters as ``stats()`` shows them; they add up (see the module docstring).

        Args:
            queued: Alerts in the hand-over buffer, or counted there while it was full, not taken in yet.
            pending: Alerts the pager took in and has not resolved (waiting, or in the SMS being sent).
        """
        return {
            "received": self.total_received(queued),
            "sent": self.sent,
            "folded": self.folded,
            "suppressed": self.suppressed,
            "dropped": self.dropped + self.late,
            "failed": self.failed,
            "pending": pending + queued,
            "handed": self.handed,
            "pages": self.pages,
            "segments": self.segments,
            "retried": self.retried,
            "refused": self.refused,
            "delivered": dict(self.delivered),
            "last_error": self.last_error,
        }
