"""Data-quality guardrails of the scoring pipeline, as metrics and log lines.

- Completeness: an RFM run whose snapshot rows differ from the scored population is
  FAILED; its scores are not used and segments keep their last good membership.
- Drift: a nightly refresh that moves a segment's population by more than
  `segments.drift_alert_percent` of what it was before the refresh (a day's movement,
  real-time moves included) raises an alert; a segment's first fill is not drift.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from stormd.schema.metrics import RFM_RUN_SECONDS, SEGMENT_MEMBERS

log = logging.getLogger("stormd.guardrails")

RFM_RUNS = Counter(
    "stormd_rfm_runs", "RFM scoring runs by store and status (ok, failed).", ["store", "status"],
)
SEGMENT_DRIFT_ALERTS = Counter(
    "stormd_segment_drift_alerts",
    "Nightly refreshes that moved a segment by more than segments.drift_alert_percent.",
    ["store", "segment"],
)


def record_segment_size(store_id: str, slug: str, members: int) -> None:
    SEGMENT_MEMBERS.labels(store=store_id, segment=slug).set(members)


def record_run(store_id: str, status: str, seconds: float, population: int, rows: int) -> None:
    RFM_RUN_SECONDS.observe(seconds)
    RFM_RUNS.labels(store=store_id, status=status.lower()).inc()
    if status != "OK":
        log.error("rfm run FAILED for store %s: snapshot has %d rows, scored population is %d;"
                  " segments keep their last good membership", store_id, rows, population)


def drift_percent(before: int, after: int) -> float | None:
    """How far a population moved, in percent of where it was; None from empty."""
    if before <= 0:
        return None
    return abs(after - before) * 100.0 / before


def check_drift(store_id: str, slug: str, before: int, after: int, limit_percent: float) -> bool:
    """Alert (metric + log) when the segment moved more than the limit; True if it did."""
    moved = drift_percent(before, after)
    if moved is None or moved <= limit_percent:
        return False
    SEGMENT_DRIFT_ALERTS.labels(store=store_id, segment=slug).inc()
    log.warning("segment drift: %s/%s moved %.1f%% (%d -> %d members), limit %.1f%%",
                store_id, slug, moved, before, after, limit_percent)
    return True
