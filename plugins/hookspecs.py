"""The channel plugin API: every hook a delivery provider may implement.

A channel plugin is a module (or object) with functions named after these hooks and marked
with `hookimpl`; one plugin is one provider. stormd loads its built-ins
(`stormd.plugins.builtin.*`) and every entry point in the `stormd.channels` group through
the same manager (plugins/manager.py), so the built-ins are worked examples. The pipeline
calls each hook on one plugin at a time, the provider chosen for a message, so a plugin
never has to ask "is this call for me?".

Hooks may be plain or `async def`; the manager awaits what needs awaiting. Arguments are
passed by name: an implementation may take fewer than the spec lists, so new arguments can
be added without breaking existing plugins.

    from stormd.plugins.hookspecs import hookimpl
    from stormd.plugins.models import ProviderInfo

    @hookimpl
    def stormd_provider():
        return ProviderInfo(name="pigeon", channels=("sms",))

    @hookimpl
    async def stormd_send(message, config, http):
        ...  # call the provider; return its message id
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "stormd"
ENTRY_POINT_GROUP = "stormd.channels"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def stormd_provider():
    """Declare who this plugin is. Required.

    Called once when the plugin is loaded. Return a `ProviderInfo(name, channels,
    idempotent=...)`; `name` is what operators write in `[channels]` and
    `[providers.<name>]`, `channels` the kinds it delivers ("email", "sms", "whatsapp",
    "push"). A plugin whose name clashes with a loaded one is refused by name.
    """


@hookspec(firstresult=True)
def stormd_validate_config(config: dict[str, Any]) -> Any:
    """Check this provider's `[providers.<name>]` section and return the value later
    passed back as `config` (a pydantic model is a good choice).

    Called once at start-up with the section as a dict (`env:` secrets already resolved;
    the pipeline's own keys `rate_limit`, `burst` and `concurrency` removed). Raise
    `ValueError` or a pydantic `ValidationError` to stop start-up with the key path named.
    Without an implementation the dict itself is passed to the other hooks.
    """


@hookspec(firstresult=True)
def stormd_send(message, config: Any, http) -> str:
    """Send one message; return the provider's id for it. Required.

    Called by the delivery pipeline for each message routed to this provider, at most
    `concurrency` at a time and within `rate_limit`. `message` is an `Outgoing` (its
    `idempotency_key` is the same on every attempt: pass it on if the API accepts one),
    `config` what `stormd_validate_config` returned, `http` a shared
    `aiohttp.ClientSession`. Raise `RetryableError` for failures worth repeating
    (network, 429, 5xx) and `PermanentError` for the rest; any other exception counts as
    retryable and is logged as a plugin bug.
    """


@hookspec(firstresult=True)
def stormd_estimate_cost(message, config: Any):
    """The price of sending `message`, a `Decimal` in the store's currency, or None if
    free. Called before each send; the pipeline records it on the delivery log. SMS
    providers bill per segment (see `stormd.plugins.sms_encoding.sms_info`)."""


@hookspec(firstresult=True)
def stormd_parse_webhook(request, config: Any, now):
    """Verify and read a request to `/webhooks/<name>`; return a `WebhookResult`.

    Called by the HTTP server with a `WebhookRequest` (raw body bytes and headers) and the
    current time. Verify the provider's signature over the raw bytes first and raise
    `WebhookRejected(reason, status)` for a bad signature (401), a stale timestamp (400) or
    a malformed body (400). Return the request's own id as `delivery_id` so a replay is
    refused, and one `StatusUpdate` per message event (delivered, open, click, bounce,
    read, failed). Without an implementation the provider has no webhook (404).
    """


@hookspec(firstresult=True)
def stormd_health(config: Any, http):
    """Report whether this provider can take traffic now: a `Health(ok, detail)`.

    Called by the pipeline before a trial send to a provider whose circuit is open (after
    its cooldown), so a provider that knows it is down (no credit, status page) keeps
    traffic on the next provider. Without an implementation the trial send decides.
    """
