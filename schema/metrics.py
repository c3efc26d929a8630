"""Every Prometheus metric stormd exposes (docs/metrics.md), defined once so other modules import
and increment them by name.

Label values are bounded sets: event types (unknown ones collapse to `_other`), outcomes,
channels, providers, actor kinds, segment slugs. Never a customer, cart or message id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import select

from stormd.config.channels import CHANNELS
from stormd.schema.wire.events import EVENT_TYPES

# The bounded label values, declared at zero on start-up (`declare_series`).
OUTCOMES = ("processed", "duplicate", "rejected", "dead_lettered")
ACTOR_KINDS = ("cart", "customer", "order", "product", "message")
# The supervised parts of the daemon (daemon/runtime/supervision.py).
COMPONENTS = ("intake", "timers", "cron", "relay", "rescoring", "pipeline", "http")
MESSAGE_STATUSES = ("sent", "failed", "cancelled", "retry", "held")
# Why a merchant template's render was refused (handlers/outreach/templates.py).
TEMPLATE_LIMITS = ("time", "output", "memory", "recursion", "number", "sequence", "variable",
                   "error")

EVENTS = Counter(
    "stormd_events", "Events taken from the stream, by type and outcome "
    "(processed, duplicate, rejected, dead_lettered).", ["type", "outcome"],
)
EVENT_SECONDS = Histogram(
    "stormd_event_seconds", "Seconds from receipt of an event to its effects being committed.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5,
             5, 10),
)
MESSAGES = Counter(
    "stormd_messages", "Outgoing messages by channel, provider and delivery status (sent, "
    "failed, cancelled; retry: rescheduled after an attempt; held: put off by quiet hours or "
    "Friday prayer).",
    ["channel", "provider", "status"],
)
MAILBOX_DEPTH = Gauge(
    "stormd_mailbox_depth", "Events waiting in actor mailboxes, by actor kind.", ["actor"],
)
RFM_RUN_SECONDS = Histogram(
    "stormd_rfm_run_seconds", "Duration of one RFM scoring run.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
SEGMENT_MEMBERS = Gauge(
    "stormd_segment_members", "Members of each segment after its last refresh.",
    ["store", "segment"],
)
BATCH_SIZE = Histogram(
    "stormd_batch_events", "Events committed together in one group-commit transaction.",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
ACTOR_RESTARTS = Counter(
    "stormd_actor_restarts", "Actors restarted after a handler raised, by actor kind.", ["actor"],
)
TIMERS_FIRED = Counter(
    "stormd_timers_fired", "Durable timers fired, by kind and outcome (fired, failed).",
    ["kind", "outcome"],
)
CRON_RUNS = Counter(
    "stormd_cron_runs", "Cron job runs, by job and outcome (ok, failed).", ["job", "outcome"],
)
OUTBOUND_PUBLISHED = Counter(
    "stormd_outbound_published", "Events out published to NATS.",
)
NATS_CONNECTED = Gauge("stormd_nats_connected", "1 while the NATS connection is up.")
REACTION_FAILURES = Counter(
    "stormd_reaction_failures", "Reactions (welcome, post-purchase, re-scoring, cart "
    "recovery, ...) that failed and were dropped, by reaction: the state change they reacted "
    "to was kept and a FAILED automation execution records each.", ["reaction"],
)
TEMPLATE_FAILURES = Counter(
    "stormd_template_failures", "Merchant template renders refused, by the limit or error "
    "(time, output, memory, recursion, number, sequence, variable, error); each fails one "
    "message, never its event.", ["reason"],
)
COMPONENT_UP = Gauge(
    "stormd_component_up", "1 while a supervised part of the daemon runs, 0 while it is down "
    "(failed, waiting for its restart).", ["component"],
)
COMPONENT_RESTARTS = Counter(
    "stormd_component_restarts", "Failures of a supervised part of the daemon, each followed "
    "by a restart (or a retried pass) after a backoff.", ["component"],
)
KPI = Gauge(
    "stormd_kpi", "Business KPIs per store (handlers/reporting/kpis.py), refreshed every "
    "5 minutes: cart recovery, revenue, cost, engagement and automation rates.",
    ["store", "kpi"],
)

_KNOWN_TYPES = frozenset(EVENT_TYPES)


def event_counter(type_: str | None, outcome: str):
    """The EVENTS child for (type, outcome), cached: `labels()` costs more than the
    increment on the hot path."""
    key = (type_label(type_), outcome)
    child = _event_children.get(key)
    if child is None:
        child = _event_children[key] = EVENTS.labels(*key)
    return child


_event_children: dict[tuple[str, str], object] = {}


def type_label(type_: str | None) -> str:
    """An event type fit for a label: a contract type, else `_other` (bounded)."""
    return type_ if type_ in _KNOWN_TYPES else "_other"


class ComponentHealth:
    """One supervised part's state: up or down, why, and the backoff before its next try.

    A part reports `ok()` after each pass or fetch that worked (cheap when nothing
    changed) and `failed()` when one did not, or the supervisor reports that its task
    ended: it is logged, counted, shown down (the gauge and /readyz), and the part waits
    the returned backoff before it tries again. The backoff grows while failures follow
    each other and starts again once the part has run without failing for RESET_AFTER."""

    RESET_AFTER = 30.0  # seconds without a failure that forgive the earlier ones
    CAP = 10.0  # the longest backoff, seconds

    def __init__(self, component: str, log: logging.Logger | None = None,
                 cap: float | None = None):
        self.component = component
        self.cap = self.CAP if cap is None else cap
        self.up = True
        self.reason: str | None = None
        self.failures = 0  # consecutive, for the backoff
        self.last_failure = 0.0
        self.log = log or logging.getLogger("stormd.supervision")
        self._gauge = COMPONENT_UP.labels(component)
        self._restarts = COMPONENT_RESTARTS.labels(component)

    def started(self) -> None:
        self.up, self.reason = True, None
        self._gauge.set(1)

    def ok(self) -> None:
        if self.up and not self.failures:
            return
        if not self.up:
            self.log.warning("%s is running again", self.component)
            self.started()
        if time.monotonic() - self.last_failure >= self.RESET_AFTER:
            self.failures = 0

    def failed(self, problem: BaseException | str, base: float = 0.1,
               traceback: bool = False) -> float:
        """Record a failure; returns the seconds to wait before the next try."""
        self.failures += 1
        self.last_failure = time.monotonic()
        self.up = False
        self.reason = problem if isinstance(problem, str) else type(problem).__name__
        self._gauge.set(0)
        self._restarts.inc()
        delay = min(max(base, 0.01) * 2 ** min(self.failures - 1, 20), self.cap)
        detail = problem if isinstance(problem, str) else f"{type(problem).__name__}: {problem}"
        self.log.error("%s failed (%s); restarting in %.2fs (failure %d in a row)",
                       self.component, detail, delay, self.failures,
                       exc_info=problem if traceback and isinstance(problem, BaseException)
                       else None)
        return delay


def declare_series(settings: Any) -> None:
    """Every bounded label combination at zero: a scrape shows each metric with
    its labels from the start, and `rate()` and alerts see a 0, not a missing series, until
    the first event, message or restart happens."""
    for type_ in (*EVENT_TYPES, "_other"):
        for outcome in OUTCOMES:
            event_counter(type_, outcome)
    for kind in ACTOR_KINDS:
        MAILBOX_DEPTH.labels(kind)
    for component in COMPONENTS:
        COMPONENT_RESTARTS.labels(component)
        COMPONENT_UP.labels(component)
    for channel in CHANNELS:
        for provider in (*settings.channels.providers(channel), "none"):
            for status in MESSAGE_STATUSES:
                MESSAGES.labels(channel, provider, status)
    for reason in TEMPLATE_LIMITS:
        TEMPLATE_FAILURES.labels(reason)


def declare_reactions(labels: list[str]) -> None:
    """The reaction-failure series of each registered reaction at zero."""
    for label in labels:
        REACTION_FAILURES.labels(label)


async def load_segment_members(sessionmaker: Any) -> None:
    """Each segment's size as of its last refresh: a restarted daemon reports them at once,
    not only after the next nightly run."""
    from stormd.schema.marketing.segments import CustomerSegment

    async with sessionmaker() as session:
        rows = (await session.execute(select(
            CustomerSegment.store_id, CustomerSegment.slug, CustomerSegment.member_count))).all()
    for store, slug, members in rows:
        SEGMENT_MEMBERS.labels(store, slug).set(members or 0)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def event_latency_buckets() -> list[tuple[float, float]]:
    """stormd_event_seconds as (bucket upper bound, cumulative count): take one before and
    one after a stretch of work and `bucket_quantile` tells its latency."""
    return [(float(s.labels["le"]), s.value) for m in EVENT_SECONDS.collect()
            for s in m.samples if s.name.endswith("_bucket")]


def bucket_quantile(before: list[tuple[float, float]], after: list[tuple[float, float]],
                    q: float) -> float:
    """The bucket bound under which the q-quantile of the events between two
    `event_latency_buckets` readings fell (inf if none, or beyond the last bound)."""
    deltas = [(le, a - b) for (le, b), (_, a) in zip(before, after)]
    total = deltas[-1][1] if deltas else 0
    for le, count in deltas:
        if total and count >= q * total:
            return le
    return float("inf")
