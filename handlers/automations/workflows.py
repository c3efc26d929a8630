"""What a store may set on an automation workflow (`automations.configure`), checked once
when it is saved so that a trigger never meets a bad configuration at send time.

- `variants`: `[{name, weight?, template}]`, an A/B test of the trigger's message
  (vip, win_back, birthday, anniversary, post_purchase): each customer lands in one
  variant, stably, as in a campaign (handlers/campaigns/ab_testing.py); the results per
  variant are in `automations.results`.
- `steps` (segment-entry workflows): a sequence `[{after, template | variants,
  channels?, discountPercent?}]`, `after` counting from the previous step (the first from
  the entry); the older one-message form `{template, channels?, discount_percent?}` is a
  sequence of one step.
- `react_to_backfill`: true to let this workflow react to customers who entered its
  segment by a backfill (docs/segments.md); else `automations.react_to_backfill` decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from stormd.config.channels import CHANNELS
from stormd.config.durations import parse_duration
from stormd.config.settings import Settings

# Triggers that send one message per run: an A/B test compares their templates.
SINGLE_MESSAGE = ("vip", "win_back", "birthday", "anniversary", "post_purchase")
MAX_STEPS = 10
MAX_VARIANTS = 10
NAME_LENGTH = 16  # Message.variant


class WorkflowError(ValueError):
    """A workflow configuration that cannot be used; the message names the key."""


@dataclass(frozen=True)
class SequenceStep:
    """One message of a segment-entry sequence."""

    after: timedelta
    template: str | None
    channels: list[str] | None = None
    discount_percent: Decimal | None = None
    variants: list[dict[str, Any]] | None = None

    def templates(self) -> list[str]:
        return [v["template"] for v in self.variants] if self.variants else [self.template or ""]


@dataclass(frozen=True)
class WorkflowConfig:
    variants: list[dict[str, Any]] | None = None
    steps: list[SequenceStep] = field(default_factory=list)
    react_to_backfill: bool | None = None

    def templates(self) -> list[str]:
        """Every template the workflow names (each must exist)."""
        names = [v["template"] for v in self.variants or ()]
        for step in self.steps:
            names += step.templates()
        return names


def parse_variants(value: Any, where: str) -> list[dict[str, Any]]:
    """`[{name, weight?, template}]` checked: unique names (not "holdout"), weights > 0."""
    if not isinstance(value, list) or not 2 <= len(value) <= MAX_VARIANTS:
        raise WorkflowError(f"{where}: give 2 to {MAX_VARIANTS} variants "
                            "[{name, weight?, template}]")
    out, names = [], set()
    for i, v in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(v, dict) or set(v) - {"name", "weight", "template"}:
            raise WorkflowError(f"{at}: an object {{name, weight?, template}}")
        name, template, weight = v.get("name"), v.get("template"), v.get("weight", 1)
        if not isinstance(name, str) or not 0 < len(name) <= NAME_LENGTH or name == "holdout":
            raise WorkflowError(f"{at}.name: 1-{NAME_LENGTH} characters, not 'holdout'")
        if name in names:
            raise WorkflowError(f"{at}.name: {name!r} is used twice")
        if not isinstance(template, str) or not template:
            raise WorkflowError(f"{at}.template: required")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise WorkflowError(f"{at}.weight: a number above 0")
        names.add(name)
        out.append({"name": name, "weight": float(weight), "template": template})
    return out


def _percent(value: Any, where: str) -> Decimal | None:
    if value in (None, 0, "0"):
        return None
    try:
        percent = Decimal(str(value))
    except InvalidOperation:
        raise WorkflowError(f"{where}: a number from 0 to 100") from None
    if not percent.is_finite() or not 0 <= percent <= 100:
        raise WorkflowError(f"{where}: a number from 0 to 100")
    return percent


def _step(data: Any, where: str) -> SequenceStep:
    known = {"after", "template", "variants", "channels", "discountPercent",
             "discount_percent"}
    if not isinstance(data, dict) or set(data) - known:
        raise WorkflowError(f"{where}: an object {{after, template | variants, channels?, "
                            "discountPercent?}")
    try:
        after = parse_duration(data.get("after", "0s"))
    except (ValueError, TypeError) as exc:
        raise WorkflowError(f"{where}.after: {exc}") from None
    template, variants = data.get("template"), data.get("variants")
    if (template is None) == (variants is None):
        raise WorkflowError(f"{where}: give a template or variants")
    if template is not None and (not isinstance(template, str) or not template):
        raise WorkflowError(f"{where}.template: a template slug")
    channels = data.get("channels")
    if channels is not None and (not isinstance(channels, list) or not channels
                                 or any(c not in CHANNELS for c in channels)):
        raise WorkflowError(f"{where}.channels: a list of {', '.join(CHANNELS)}")
    percent = data.get("discountPercent", data.get("discount_percent"))
    return SequenceStep(after, template, channels, _percent(percent, f"{where}.discountPercent"),
                        parse_variants(variants, f"{where}.variants") if variants else None)


def parse_config(trigger: str, config: dict[str, Any] | None) -> WorkflowConfig:
    """The workflow configuration of `trigger`, checked; WorkflowError names what is wrong."""
    if config is not None and not isinstance(config, dict):
        raise WorkflowError("config: an object")
    config = dict(config or {})
    base = trigger.split(":", 1)[0]
    react = config.pop("react_to_backfill", config.pop("reactToBackfill", None))
    if react is not None and not isinstance(react, bool):
        raise WorkflowError("config.react_to_backfill: true or false")
    variants = config.pop("variants", None)
    if variants is not None:
        if base not in SINGLE_MESSAGE:
            raise WorkflowError(f"config.variants: A/B variants are for {', '.join(SINGLE_MESSAGE)}"
                                + ("; give a segment-entry step variants instead"
                                   if base == "segment_entry" else ""))
        variants = parse_variants(variants, "config.variants")
    steps: list[SequenceStep] = []
    if base == "segment_entry":
        if "steps" in config:
            raw = config.pop("steps")
            if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STEPS:
                raise WorkflowError(f"config.steps: 1 to {MAX_STEPS} steps")
            steps = [_step(s, f"config.steps[{i}]") for i, s in enumerate(raw)]
            for key in ("template", "channels", "discount_percent"):
                if config.pop(key, None) is not None:
                    raise WorkflowError(f"config.{key}: give it inside steps")
        else:
            if not config.get("template"):
                raise WorkflowError("config.template: required for a segment-entry workflow "
                                    "(or give steps)")
            steps = [_step({"template": config.pop("template"),
                            "channels": config.pop("channels", None),
                            "discount_percent": config.pop("discount_percent", None)},
                           "config")]
    if config:
        raise WorkflowError(f"config: unknown key(s) {', '.join(sorted(config))}")
    return WorkflowConfig(variants, steps, react)


def reacts_to_backfill(settings: Settings, trigger: str, config: WorkflowConfig | None) -> bool:
    """Whether a trigger reacts to a segment's backfill entrants: its workflow says so,
    else `automations.react_to_backfill` names it (or `segment_entry` for them all)."""
    if config is not None and config.react_to_backfill is not None:
        return config.react_to_backfill
    named = settings.automations.react_to_backfill
    return trigger in named or trigger.split(":", 1)[0] in named
