"""stormd's channel plugin API: everything a delivery provider plugin imports.

A channel plugin is a module whose functions are named after stormd's hooks and marked
with `hookimpl`; one plugin is one provider. stormd loads its built-ins and every module
registered in the `stormd.channels` entry-point group (`ENTRY_POINT_GROUP`) at start-up,
through the same manager, so the built-ins (`stormd.plugins.builtin`) are worked examples.
A `hookimpl` whose name matches no hook (a typo) stops start-up, naming it.

The hooks, by phase (when each is called and what its result means: docs/plugins.md,
or the docstrings in plugins/_hookspecs.py):

- loading: `stormd_provider()` -> ProviderInfo (required),
  `stormd_validate_config(config)` -> the config object the other hooks receive;
- sending: `stormd_estimate_cost(message, config)` -> Decimal | None,
  `stormd_send(message, config, http)` -> the provider's message id (required);
- provider health: `stormd_health(config, http)` -> Health;
- webhooks: `stormd_parse_webhook(request, config, now)` -> WebhookResult.

A hook takes only the arguments it names and may be `async def`:

    from stormd.plugins import Outgoing, ProviderInfo, RetryableError, hookimpl

    @hookimpl
    def stormd_provider():
        return ProviderInfo(name="pigeon", channels=("sms",))

    @hookimpl
    async def stormd_send(message: Outgoing, config, http) -> str:
        ...  # call the provider; return its id, raise RetryableError/PermanentError

Only the names in `__all__` are the API; the modules behind them (`_models`, `_errors`,
...), `stormd.plugins.delivery` and `stormd.plugins.policy` may change at any release.
Importing this package is cheap: it loads pluggy and the standard library, never the
delivery pipeline or the database layer.
"""

from __future__ import annotations

from stormd.config.channels import CHANNELS, Channel
from stormd.plugins._errors import (
    DeliveryError,
    PermanentError,
    RetryableError,
    WebhookRejected,
)
from stormd.plugins._hookspecs import ENTRY_POINT_GROUP, PROJECT, hookimpl
from stormd.plugins._models import (
    UPDATE_KINDS,
    Health,
    Outgoing,
    ProviderInfo,
    StatusUpdate,
    WebhookRequest,
    WebhookResult,
)
from stormd.plugins._signatures import (
    body_digest,
    hub_signature,
    svix_signature,
    verify_hub_signature,
    verify_svix,
    verify_token,
)
from stormd.plugins._sms_encoding import SmsInfo, sms_info, sms_segments, trim_to_fit

__all__ = [
    # registering
    "hookimpl",
    "PROJECT",
    "ENTRY_POINT_GROUP",
    # values received and returned
    "ProviderInfo",
    "Outgoing",
    "WebhookRequest",
    "WebhookResult",
    "StatusUpdate",
    "Health",
    "UPDATE_KINDS",
    "Channel",
    "CHANNELS",
    # errors a plugin raises
    "DeliveryError",
    "RetryableError",
    "PermanentError",
    "WebhookRejected",
    # SMS segments as the gateways bill them
    "SmsInfo",
    "sms_info",
    "sms_segments",
    "trim_to_fit",
    # webhook signatures, checked over the raw request bytes
    "verify_svix",
    "svix_signature",
    "verify_hub_signature",
    "hub_signature",
    "verify_token",
    "body_digest",
]
