"""Which channel carries a message to a customer who can be reached on several.

The cheapest: by what this message costs on each channel with the provider that would
carry it (the caller's `price`: SMS by its billed segments, WhatsApp by the provider's
rate card, e-mail and push by theirs), ties and unknown prices in the order free first
(push), then WhatsApp, SMS, e-mail; and e-mail when the content is too long for a
phone-sized message. Only channels the customer consented to and has an address for count
(`plugins.policy.eligibility.Reach` answers that, DND list included).

Campaigns and automations route this way (`routing = "cheapest"`, the default) among the
channels they allow; `"listed"` takes the sender's own order instead. Cart reminder steps
name their channel and fall back in `eligibility.fallback_order`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from stormd.config.channels import Channel
from stormd.plugins.policy.eligibility import Reach

COST_ORDER = (Channel.PUSH, Channel.WHATSAPP, Channel.SMS, Channel.EMAIL)
# Beyond this many characters a message reads better as an e-mail (3 SMS segments of
# UCS-2, and more than a push notification shows).
LONG_CONTENT = 200
ROUTINGS = ("cheapest", "listed")
Routing = Literal["cheapest", "listed"]


def choose_channel(customer: Reach, preferred: Sequence[str] = COST_ORDER,
                   content_length: int = 0, price: Callable[[str], Any] | None = None
                   ) -> str | None:
    """The channel to use among `preferred`, or None when none reaches the customer.

    Candidates are tried cheapest first (by `price(channel)` when given, else in
    COST_ORDER); long content goes to e-mail first when e-mail is among them and
    reachable."""
    unknown = [c for c in preferred if c not in COST_ORDER]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; expected {list(COST_ORDER)}")
    candidates = [c for c in COST_ORDER if c in preferred]
    if price is not None:
        candidates.sort(key=price)  # stable: equal prices keep COST_ORDER
    if content_length > LONG_CONTENT and "email" in candidates:
        candidates.remove("email")
        candidates.insert(0, "email")
    return next((c for c in candidates if customer.reachable(c)), None)


def route(customer: Reach, channels: Sequence[str], routing: str,
          length: Callable[[str], int], price: Callable[[str], Any] | None = None
          ) -> str | None:
    """The channel for one customer among the sender's `channels` (those it has a body
    for). "listed": the first the customer can receive. "cheapest": `choose_channel` by
    `price(channel)` (what this message costs there), with `length(channel)` (the
    characters of that channel's message) deciding whether the cheapest phone channel's
    message is long enough to go by e-mail instead."""
    if routing == "listed":
        return next((c for c in channels if customer.reachable(c)), None)
    first = choose_channel(customer, channels, price=price)
    if first in (None, "email") or "email" not in channels or not customer.reachable("email"):
        return first
    return choose_channel(customer, channels, length(first), price=price)
