"""The typed settings object: every key of stormd.toml (docs/configuration.md) with its default.

Built once at start-up by `config.loader.load_settings` and passed in; nothing deep inside
the daemon reads files or the environment.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from stormd.config.channels import Channel
from stormd.config.durations import format_duration, parse_duration


def _to_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_duration),
    PlainSerializer(format_duration, return_type=str),
]


def _to_cron(value: Any) -> str:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise ValueError(f'"{value}" is not a cron schedule')
    return value


Cron = Annotated[str, BeforeValidator(_to_cron)]


def _to_timezone(value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'"{value}" is not a time zone') from None
    return str(value)


TimeZoneName = Annotated[str, BeforeValidator(_to_timezone)]


class Section(BaseModel):
    """A config section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DaemonSettings(Section):
    data_dir: str = ".stormd"
    timezone: TimeZoneName = "Asia/Dhaka"
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_grace: Duration = timedelta(seconds=30)
    mailbox_size: int = Field(default=1000, ge=1)  # events queued per actor before intake waits
    workers: int = Field(default=1, ge=1)  # concurrent group-commit batches (1 suits SQLite)


class NatsSettings(Section):
    url: str = "embedded"
    subject_prefix: str = "stormcom"
    stream: str = "STORMD_EVENTS"
    consumer: str = "stormd"
    max_deliver: int = Field(default=5, ge=1)
    ack_wait: Duration = timedelta(seconds=30)
    stream_max_age: Duration = timedelta(days=7)
    duplicate_window: Duration = timedelta(minutes=2)
    # How long the inbox (processed_events) remembers an event; older rows are pruned.
    dedupe_horizon: Duration = timedelta(days=7)
    batch_size: int = Field(default=500, ge=1)
    stream_max_bytes: int = Field(default=-1, ge=-1)  # -1: unlimited
    dlq_stream: str = "STORMD_DLQ"
    out_stream: str = "STORMD_OUT"
    embedded_port: int = Field(default=4222, ge=0, le=65535)  # 0: any free port

    @field_validator("dedupe_horizon")
    @classmethod
    def _longer_than_the_window(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        """Past JetStream's window only the inbox catches a repeat: it must remember longer."""
        window = info.data.get("duplicate_window")
        if window is not None and value <= window:
            raise ValueError(f"must be longer than nats.duplicate_window "
                             f"({format_duration(window)})")
        return value


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///.stormd/stormd.db"
    echo: bool = False


class ListenSettings(Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f'"{value}" is not host:port')
        return value


class MetricsSettings(ListenSettings):
    listen: str = "127.0.0.1:9464"


class HttpSettings(ListenSettings):
    listen: str = "127.0.0.1:8080"


class CartStep(Section):
    after: Duration
    channel: Channel
    template: str
    discount_percent: Decimal = Field(default=Decimal(0), ge=0, le=100)


def _default_steps() -> list[CartStep]:
    return [
        CartStep(after="0s", channel="whatsapp", template="cart_reminder_1"),
        CartStep(after="24h", channel="email", template="cart_reminder_2", discount_percent=5),
        CartStep(after="3d", channel="sms", template="cart_reminder_3", discount_percent=10),
    ]


class CartSettings(Section):
    abandon_after: Duration = timedelta(hours=1)
    min_value: Decimal = Decimal(500)
    attribution_window: Duration = timedelta(days=7)
    recovery_url: str = "https://{store}.stormcom.app/cart/{cart}"
    steps: list[CartStep] = Field(default_factory=_default_steps)


class RfmWeights(Section):
    r: int = Field(default=4, ge=0)
    f: int = Field(default=3, ge=0)
    m: int = Field(default=3, ge=0)


class RfmThresholds(Section):
    """Cut points for the "thresholds" scoring mode: four ascending bounds per dimension."""

    recency_days: list[float] = Field(default_factory=lambda: [180, 90, 45, 14])
    frequency: list[float] = Field(default_factory=lambda: [1, 2, 4, 8])
    monetary: list[float] = Field(default_factory=lambda: [1000, 3000, 8000, 20000])


class RfmSettings(Section):
    window_days: int = Field(default=180, ge=1)
    weights: RfmWeights = Field(default_factory=RfmWeights)
    schedule: Cron = "0 2 * * *"
    mode: Literal["quintile", "thresholds"] = "quintile"
    thresholds: RfmThresholds = Field(default_factory=RfmThresholds)
    # Snapshot rows are kept for this many of a store's latest runs (the run rows stay).
    keep_runs: int = Field(default=7, ge=1)


class LifecycleSettings(Section):
    new_max_days: int = Field(default=30, ge=0)
    churned_after_days: int = Field(default=90, ge=0)
    # E-mail engagement: a customer who opened an e-mail within `engaged_within_days`
    # (0: opens never count) is CHURNED only once the last order is more than
    # `engaged_churned_after_days` old; open rates count `engagement_window_days`.
    engaged_within_days: int = Field(default=30, ge=0)
    engaged_churned_after_days: int = Field(default=180, ge=0)
    engagement_window_days: int = Field(default=90, ge=1)


class SegmentSettings(Section):
    drift_alert_percent: float = Field(default=20, ge=0)
    max_per_store: int = Field(default=50, ge=1)


class LimitSettings(Section):
    max_messages_per_customer_per_day: int = Field(default=2, ge=0)
    same_trigger_cooldown: Duration = timedelta(hours=24)
    offer_cooldown: Duration = timedelta(days=14)
    quiet_hours: tuple[str, str] = ("01:00", "07:00")
    # Jumu'ah: no marketing sends on Fridays in this local span (empty list: none).
    friday_prayer: tuple[str, str] | tuple[()] = ("13:00", "14:00")
    # The daily lunch dip: no marketing sends in this local span, any day (empty: none).
    lunch: tuple[str, str] | tuple[()] = ("13:00", "14:00")


ProviderChoice = str | list[str]


class ChannelSettings(Section):
    email: ProviderChoice = "outbox"
    sms: ProviderChoice = "outbox"
    whatsapp: ProviderChoice = "outbox"
    push: ProviderChoice = "outbox"

    def providers(self, channel: str) -> list[str]:
        """The providers of a channel in failover order."""
        value = getattr(self, channel)
        return [value] if isinstance(value, str) else list(value)


class DeliverySettings(Section):
    """How the delivery pipeline claims, retries and fails over (plugins/delivery/pipeline.py)."""

    poll_interval: Duration = timedelta(seconds=1)
    batch_size: int = Field(default=500, ge=1)
    lease: Duration = timedelta(minutes=5)
    max_attempts: int = Field(default=5, ge=1)
    retry_base: Duration = timedelta(seconds=30)
    retry_max: Duration = timedelta(hours=1)
    concurrency: int = Field(default=50, ge=1)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown: Duration = timedelta(seconds=60)
    preferences_url: str = "https://{store}.stormcom.app/preferences?token={token}"
    preferences_secret: str = ""


class MessageCosts(Section):
    """What one message costs in the store's currency, before any provider says otherwise
    (an SMS costs this per segment unless the store's SmsProvider row has its own rate)."""

    email: Decimal = Field(default=Decimal("0.10"), ge=0)
    sms: Decimal = Field(default=Decimal("1.00"), ge=0)
    whatsapp: Decimal = Field(default=Decimal("0.50"), ge=0)
    push: Decimal = Field(default=Decimal("0"), ge=0)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def weekly_moment(moment: str) -> tuple[int, int, int]:
    """(weekday 0-6, hour, minute) of a "ddd HH:MM" weekly moment, e.g. "thu 20:00"."""
    try:
        day, clock = moment.lower().split()
        hours, minutes = (int(x) for x in clock.split(":"))
        if day in WEEKDAYS and 0 <= hours < 24 and 0 <= minutes < 60:
            return WEEKDAYS.index(day), hours, minutes
    except (ValueError, AttributeError):
        pass
    raise ValueError(f'"{moment}" is not a weekly moment like "thu 20:00"')


class CampaignSettings(Section):
    """Campaign fan-out, send-time choices and the cost preview / ROI guard defaults."""

    batch_size: int = Field(default=2000, ge=1)
    preview_renders: int = Field(default=5000, ge=1)  # above: SMS cost estimated from a sample
    # Expected revenue = average order value x conversion rate x reach.
    expected_conversion_rate: float = Field(default=0.038, ge=0, le=1)
    default_order_value: Decimal = Field(default=Decimal(2500), ge=0)  # no order history yet
    budget_alert_percent: float = Field(default=80, ge=0, le=100)
    best_times: list[str] = Field(default_factory=lambda: ["10:00", "14:00", "20:00"])
    off_peak: tuple[str, str] = ("22:00", "01:00")
    message_cost: MessageCosts = Field(default_factory=MessageCosts)
    ab_min_sample: int = Field(default=100, ge=1)  # per variant before a winner is named
    ab_confidence: float = Field(default=0.95, gt=0, lt=1)
    # The store's own conversion rate replaces expected_conversion_rate once its past
    # campaigns reached at least this many recipients.
    own_conversion_min_recipients: int = Field(default=500, ge=1)
    # "ddd HH:MM" local moments for send_mode "peak", and spans ["ddd HH:MM", "ddd HH:MM"]
    # of low response that best-time slots and deferrals skip.
    peak_times: list[str] = Field(default_factory=lambda: ["thu 20:00", "sat 10:00"])
    low_response: list[tuple[str, str]] = Field(
        default_factory=lambda: [("sun 17:00", "mon 12:00")])

    @field_validator("peak_times")
    @classmethod
    def _weekly_moments(cls, value: list[str]) -> list[str]:
        for moment in value:
            weekly_moment(moment)
        return value

    @field_validator("low_response")
    @classmethod
    def _weekly_spans(cls, value: list[tuple[str, str]]) -> list[tuple[str, str]]:
        for start, end in value:
            weekly_moment(start), weekly_moment(end)
        return value


class AutomationSettings(Section):
    """The built-in automation triggers; each may be turned off."""

    enabled: list[str] = Field(default_factory=lambda: [
        "win_back", "vip", "post_purchase", "welcome", "birthday", "anniversary",
        "segment_entry"])
    # Triggers that also react to a segment's backfill (its first fill, changed criteria,
    # imported history), e.g. ["vip"]; by default a backfill rewards nobody.
    react_to_backfill: list[str] = Field(default_factory=list)
    # What a trigger does when the customer has reached the daily cap: "defer" to the
    # customer's next allowed day, or "drop". Transactional messages are never capped.
    on_cap: dict[str, Literal["defer", "drop"]] = Field(default_factory=lambda: {"campaign": "drop"})
    win_back_after_days: int = Field(default=45, ge=1)
    win_back_cooldown: Duration = timedelta(days=14)
    win_back_discount_percent: Decimal = Field(default=Decimal(15), ge=0, le=100)
    win_back_schedule: Cron = "0 11 * * *"
    vip_discount_percent: Decimal = Field(default=Decimal(20), ge=0, le=100)
    post_purchase_delay: Duration = timedelta(days=2)
    # The upsell starts at the first of these statuses an order reaches (cash on delivery
    # goes PENDING -> SHIPPED -> DELIVERED, never PAID); once per order.
    post_purchase_on: list[Literal["PAID", "SHIPPED", "DELIVERED"]] = Field(
        default_factory=lambda: ["PAID", "DELIVERED"], min_length=1)
    welcome_delays: list[Duration] = Field(
        default_factory=lambda: [timedelta(0), timedelta(days=3), timedelta(days=7)])
    welcome_discount_percent: Decimal = Field(default=Decimal(10), ge=0, le=100)
    birthday_discount_percent: Decimal = Field(default=Decimal(20), ge=0, le=100)
    birthday_schedule: Cron = "0 10 * * *"
    anniversary_discount_percent: Decimal = Field(default=Decimal(15), ge=0, le=100)
    anniversary_schedule: Cron = "0 10 * * *"  # first-order anniversaries, in the store's zone
    code_valid_for: Duration = timedelta(days=14)
    channels: list[Channel] = Field(default_factory=lambda: ["whatsapp", "email", "sms"])
    routing: Literal["cheapest", "listed"] = "cheapest"  # plugins.policy.routing
    shop_url: str = "https://{store}.stormcom.app/"
    recommendations_count: int = Field(default=4, ge=1, le=20)
    recommendations_exclude_days: int = Field(default=30, ge=0)
    recommendations_cache: Duration = timedelta(days=1)
    # Win-back by whole days of silence (the default), by the stored churn risk (ACTIVE,
    # at least win_back_min_churn_risk) or by the predicted churn probability
    # (handlers/predictions): ACTIVE customers at or above the threshold.
    win_back_by: Literal["days", "churn_risk", "churn_probability"] = "days"
    win_back_min_churn_risk: float = Field(default=0.75, ge=0, le=1)
    win_back_churn_probability: float = Field(default=0.7, gt=0, le=1)
    # The VIP reward on entering `vip` (RFM composite), or on entering the top
    # `vip_top_percent` % of the store's customers by predicted 365-day value.
    vip_by: Literal["rfm", "predicted_clv"] = "rfm"
    vip_top_percent: float = Field(default=10, gt=0, le=100)


class PredictionSettings(Section):
    """Predicted purchases, churn and value (BG/NBD with Gamma-Gamma), and learned
    recommendations, fitted per store after each scoring run."""

    enabled: bool = True
    # "not enough history" below these: a fit would be noise, not a forecast.
    min_repeat_buyers: int = Field(default=200, ge=2)
    min_history_days: int = Field(default=90, ge=1)
    # Predicted value discounted to today at this yearly rate (0.1 = 10 %); 0: none.
    annual_discount: float = Field(default=0.0, ge=0, le=1)
    # churn.probability: the chance of no purchase within this many days.
    churn_horizon_days: int = Field(default=90, ge=1, le=3650)
    learned_recommendations: bool = True
    recommendation_neighbours: int = Field(default=20, ge=1, le=100)


class Settings(Section):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    nats: NatsSettings = Field(default_factory=NatsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    carts: CartSettings = Field(default_factory=CartSettings)
    rfm: RfmSettings = Field(default_factory=RfmSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    automations: AutomationSettings = Field(default_factory=AutomationSettings)
    predictions: PredictionSettings = Field(default_factory=PredictionSettings)
    # Each provider's own section, validated by its plugin (its stormd_validate_config hook).
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)

    # Key paths whose values came from "env:" references (set by the loader; masked in print).
    _secret_paths: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def secret_paths(self) -> frozenset[str]:
        return self._secret_paths

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.daemon.timezone)
