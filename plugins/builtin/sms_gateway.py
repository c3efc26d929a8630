"""What the Bangladeshi SMS gateway plugins share: config, their hooks other than the send
(`gateway_hooks`: who they are, config, cost per segment, delivery-report callbacks), and
telling an account problem from a rejected message.

The gateways sign nothing, so a delivery report is accepted only with the configured
`dlr_token` in its URL (`/webhooks/<name>?token=...`); a report repeated with the same
reference and status is a replay and refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qsl

from pydantic import SecretStr

from stormd.plugins import (
    PermanentError,
    RetryableError,
    StatusUpdate,
    WebhookRejected,
    WebhookResult,
    hookimpl,
    sms_segments,
    verify_token,
)
from stormd.plugins.builtin.transport import ProviderConfig, declare

DLR_KINDS = {"DELIVERED": "delivered", "DELIVRD": "delivered", "SUCCESS": "delivered",
             "FAILED": "failed", "UNDELIV": "failed", "UNDELIVERED": "failed",
             "REJECTED": "failed", "EXPIRED": "failed"}
# Words in a gateway's refusal that blame our account (credentials, credit), not the
# message: retryable, so the breaker moves traffic to the next gateway.
ACCOUNT_WORDS = ("user", "password", "passwd", "authent", "auth", "balance", "credit")


class GatewayConfig(ProviderConfig):
    sender_id: str = ""  # masking name or long code; a store's own sender id wins
    rate_per_segment: Decimal = Decimal("0.35")  # BDT; a store's SmsProvider row wins
    dlr_token: SecretStr = SecretStr("")


def sms_cost(message, config: GatewayConfig) -> Decimal:
    return config.rate_per_segment * sms_segments(message.body)


def gateway_hooks(name: str, config_model: type[GatewayConfig], description: str, *,
                  idempotent: bool = False):
    """A gateway module's hooks besides `stormd_send`:

        (stormd_provider, stormd_validate_config, stormd_estimate_cost,
         stormd_parse_webhook) = gateway_hooks(NAME, Config, "...")
    """
    provider, validate = declare(name, ("sms",), config_model, description,
                                 idempotent=idempotent)

    @hookimpl
    def stormd_estimate_cost(message, config: GatewayConfig) -> Decimal:
        return sms_cost(message, config)

    @hookimpl
    def stormd_parse_webhook(request, config: GatewayConfig) -> WebhookResult:
        return parse_delivery_report(request, config, name)

    return provider, validate, stormd_estimate_cost, stormd_parse_webhook


def refusal(provider: str, text: str, code: str) -> RetryableError | PermanentError:
    """The error for a gateway's refusal `text`: retryable when it blames our account."""
    what = f"{provider}: {text.strip()[:200]}"
    if any(word in text.lower() for word in ACCOUNT_WORDS):
        return RetryableError(what, code=code)
    return PermanentError(what, code=code)


def parse_delivery_report(request, config: GatewayConfig, provider: str) -> WebhookResult:
    """A delivery report as JSON or form fields: reference (our csms_id or the gateway's
    id) and status."""
    verify_token(config.dlr_token.get_secret_value(), request.query.get("token"))
    try:
        if request.body.lstrip().startswith(b"{"):
            fields = json.loads(request.body)
        else:
            fields = dict(parse_qsl(request.body.decode()))
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected("delivery report is neither JSON nor form data", 400) from None
    fields = {**dict(request.query), **fields}
    fields.pop("token", None)
    reference = next((str(fields[k]) for k in ("reference_id", "csms_id", "MessageId",
                                               "message_id", "id") if fields.get(k)), None)
    status = str(fields.get("status") or fields.get("Status") or "").upper()
    kind = DLR_KINDS.get(status)
    if not reference or kind is None:
        raise WebhookRejected(f"{provider} delivery report needs a reference and a known "
                              f"status, got {sorted(fields)}", 400)
    reason = fields.get("error") or fields.get("reason")
    return WebhookResult(
        delivery_id=f"{reference}:{status}",
        updates=(StatusUpdate(external_id=reference, kind=kind,
                              reason=str(reason) if reason else None),))
