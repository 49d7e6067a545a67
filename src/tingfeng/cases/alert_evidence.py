"""Evidence captured at alert time: the post behind each new alert, before it can be deleted.

Key posts are often gone within the hour. So an alert at `evidence_on_alert` or above whose
post has an address gets that page captured (WARC + full-page screenshot, hashed; see
`cases.evidence`) within seconds, as 原帖 evidence linked to the alert and the post, by the
system. A case opened from the alert later finds it there.

It runs beside the alert clock (one per installation, so two processes never capture the same
alert), in its own thread: a capture takes seconds and must not hold escalations up. Each
alert is tried once: a page that cannot be fetched is on record as failed evidence, with the
reason; an address the guard refuses (an internal network) is logged and not retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import Engine, exists, select

from tingfeng.cases.evidence import CaptureFailed, EvidenceError, capture_evidence
from tingfeng.db.models import Alert, Evidence, Post
from tingfeng.events.grading import Level
from tingfeng.settings import Settings

log = logging.getLogger(__name__)

# Alerts older than this are not captured any more: the moment has passed (and a service that
# was down for a week should not start by capturing a week of pages).
LOOKBACK = timedelta(hours=24)
# Captures per sweep; the rest wait for the next one.
PER_SWEEP = 10


def due_alerts(
    engine: Engine, settings: Settings, now: datetime, skip: Collection[int] = ()
) -> list[tuple[int, int]]:
    """(alert id, post id) of recent alerts at `evidence_on_alert` or above whose post has an
    address and that have no evidence yet, oldest first; not those in `skip` (tried already)."""
    if settings.evidence_on_alert == "off":
        return []
    floor = Level(settings.evidence_on_alert).rank
    levels = [level.value for level in Level if level.rank >= floor]
    query = (
        select(Alert.id, Alert.post_id)
        .join(Post, Post.id == Alert.post_id)
        .where(
            Alert.created_at >= now - LOOKBACK,
            Alert.level.in_(levels),
            Post.url.is_not(None),
            Post.url != "",
            ~exists().where(Evidence.alert_id == Alert.id),
            Alert.id.not_in(list(skip)),
        )
        .order_by(Alert.id)
        .limit(PER_SWEEP)
    )
    with engine.connect() as conn:
        return [(int(r.id), int(r.post_id)) for r in conn.execute(query).all()]


class AlertEvidence:
    """Sweeps for due alerts every `every_s` seconds and captures their posts, one at a time."""

    def __init__(
        self, engine: Engine, settings: Settings, every_s: float, now: Callable[[], datetime]
    ) -> None:
        self.engine, self.settings, self.every_s, self.now = engine, settings, every_s, now
        self._tried: set[int] = set()
        self._stop = threading.Event()

    def sweep(self) -> list[int]:
        """Capture what is due; the ids of the evidence recorded (captured or failed)."""
        recorded = []
        due = due_alerts(self.engine, self.settings, self.now(), self._tried)
        for alert_id, post_id in due:
            if self._stop.is_set():
                break
            self._tried.add(alert_id)
            try:
                recorded.append(
                    capture_evidence(
                        self.engine, self.settings, post_id=post_id, alert_id=alert_id,
                        category="post",
                    )
                )  # fmt: skip
            except CaptureFailed as exc:
                log.warning("alert %s: the post's page could not be captured: %s", alert_id, exc)
                if exc.evidence_id is not None:
                    recorded.append(exc.evidence_id)
            except EvidenceError as exc:
                log.warning("alert %s: no evidence captured: %s", alert_id, exc)
        return recorded

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("evidence sweep failed; retrying")
            self._stop.wait(self.every_s)

    def start(self) -> AlertEvidence:
        threading.Thread(target=self.run, name="alert-evidence", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
