"""Which channel carries a message to a customer who can be reached on several.

Free first (push), then WhatsApp (cheap, read), then SMS; e-mail when the content is too
long for a phone-sized message. Only channels the customer consented to and has an address
for count (`handlers.eligibility.Reach` answers that, DND list included).
"""

from __future__ import annotations

from collections.abc import Sequence

from stormd.handlers.eligibility import Reach

COST_ORDER = ("push", "whatsapp", "sms", "email")
# Beyond this many characters a message reads better as an e-mail (3 SMS segments of
# UCS-2, and more than a push notification shows).
LONG_CONTENT = 200


def choose_channel(customer: Reach, preferred: Sequence[str] = COST_ORDER,
                   content_length: int = 0) -> str | None:
    """The channel to use among `preferred`, or None when none reaches the customer.

    Candidates are tried cheapest first; long content goes to e-mail first when e-mail is
    among them and reachable."""
    unknown = [c for c in preferred if c not in COST_ORDER]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown}; expected {list(COST_ORDER)}")
    candidates = [c for c in COST_ORDER if c in preferred]
    if content_length > LONG_CONTENT and "email" in candidates:
        candidates.remove("email")
        candidates.insert(0, "email")
    return next((c for c in candidates if customer.reachable(c)), None)
