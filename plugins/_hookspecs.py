"""The hook specifications: every hook a channel plugin may implement, grouped by phase.

Plugin authors read this through `stormd.plugins` (which re-exports `hookimpl`); the
manager (plugins/delivery/manager.py) registers this module as the specification, so an
implementation whose name is not defined here stops start-up.

One plugin is one provider, and the pipeline calls each hook on that plugin alone, so a
plugin never asks "is this call for me?" and a `firstresult` hook has exactly one answer.
Arguments are passed by name: an implementation may take fewer than a spec lists, so a new
argument can be added without breaking existing plugins. Any hook may be `async def`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pluggy

from stormd.plugins._models import Health, Outgoing, ProviderInfo, WebhookRequest, WebhookResult

if TYPE_CHECKING:  # only named in annotations: the face must not import aiohttp
    import aiohttp

PROJECT = "stormd"
ENTRY_POINT_GROUP = "stormd.channels"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -------------------------------------------------------------------------
# Loading: once per plugin, at start-up
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def stormd_provider() -> ProviderInfo:
    """Declare who this plugin is. Required.

    Called once, right after the plugin is loaded. Return a `ProviderInfo`: its `name` is
    what operators write in `[channels]` and `[providers.<name>]`, its `channels` the kinds
    it delivers (members of `CHANNELS`). A plugin whose name is already taken, or that
    names an unknown channel, is refused by name and the daemon starts without it.
    """


@hookspec(firstresult=True)
def stormd_validate_config(config: dict[str, Any]) -> Any:
    """Check this provider's `[providers.<name>]` section; return the value later passed
    back to the other hooks as `config` (a pydantic model is a good choice).

    Called once at start-up with the section as a dict: `env:` secrets already resolved,
    the pipeline's own keys (`rate_limit`, `burst`, `concurrency`) removed. Raising
    `ValueError` or a pydantic `ValidationError` stops start-up with the key path named.
    Returning None, or not implementing the hook, passes the dict itself on.
    """


# -------------------------------------------------------------------------
# Sending: once per message routed to this provider
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def stormd_estimate_cost(message: Outgoing, config: Any) -> Decimal | None:
    """The price of sending `message`, in the store's currency.

    Called before each send; the result is recorded on the delivery log. None means
    free. SMS providers bill per segment:
    `sms_segments(message.body)` counts them as the gateways do. It is also called before
    a message is queued (`to` empty, `message_id` 0) to price cost previews and "cheapest"
    routing: keep it a pure function of the message and the configuration.
    """


@hookspec(firstresult=True)
def stormd_send(message: Outgoing, config: Any, http: aiohttp.ClientSession) -> str:
    """Send one message; return the provider's id for it. Required.

    Called by the delivery pipeline for each message routed to this provider, at most
    `concurrency` at a time and within `rate_limit`; consent, quiet hours, unsubscribe
    links and failover are already handled. `message.idempotency_key` is the same on every
    attempt: pass it on if the provider de-duplicates. `config` is what
    `stormd_validate_config` returned, `http` the daemon's shared client session.

    The returned id is how later webhooks find the message; an empty result counts as a
    permanent failure. Raise `RetryableError` for failures worth repeating (network, 429,
    5xx; enough of them open the provider's circuit and move traffic to the next
    provider) and `PermanentError` for the rest (the message fails); any other exception
    is logged as a plugin bug and retried.
    """


# -------------------------------------------------------------------------
# Provider health: when traffic may come back after failures
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def stormd_health(config: Any, http: aiohttp.ClientSession) -> Health:
    """Whether this provider can take traffic now.

    Called before the trial send to a provider whose circuit opened after repeated
    retryable failures, once its cooldown is over. `Health(ok=False)` keeps the circuit
    open and traffic on the next provider (no credit, a status page saying it is down);
    `ok=True`, None or no implementation lets the trial send decide.
    """


# -------------------------------------------------------------------------
# Webhooks: the provider reports what became of a message
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def stormd_parse_webhook(request: WebhookRequest, config: Any, now: datetime) -> WebhookResult:
    """Verify and read one request to `/webhooks/<name>`.

    Called by the daemon's HTTP server with the request as received (raw body bytes,
    headers, query) and the current time. Verify the provider's signature over
    `request.body` first and raise `WebhookRejected(reason, status)` for a bad signature
    (401), a stale timestamp or a malformed body (400): the request is answered with that
    status and changes nothing.

    Return a `WebhookResult`: the request's own id as `delivery_id` (a replay carrying the
    same one is refused with 409) and one `StatusUpdate` per message event. Without an
    implementation the provider has no webhook (404).
    """
