"""What the Bangladeshi SMS gateway plugins share: config, cost per segment, and their
delivery-report callbacks.

The gateways sign nothing, so a delivery report is accepted only with the configured
`dlr_token` in its URL (`/webhooks/<name>?token=...`); a report repeated with the same
reference and status is a replay and refused.
"""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qsl

from pydantic import SecretStr

from stormd.plugins.api import StatusUpdate, WebhookResult
from stormd.plugins.builtin.transport import ProviderConfig
from stormd.plugins.errors import WebhookRejected
from stormd.plugins.signatures import verify_token
from stormd.plugins.sms_encoding import segments

DLR_KINDS = {"DELIVERED": "delivered", "DELIVRD": "delivered", "SUCCESS": "delivered",
             "FAILED": "failed", "UNDELIV": "failed", "UNDELIVERED": "failed",
             "REJECTED": "failed", "EXPIRED": "failed"}


class GatewayConfig(ProviderConfig):
    sender_id: str = ""  # masking name or long code; a store's own sender id wins
    rate_per_segment: Decimal = Decimal("0.35")  # BDT; a store's SmsProvider row wins
    dlr_token: SecretStr = SecretStr("")


def sms_cost(message, config: GatewayConfig) -> Decimal:
    return config.rate_per_segment * segments(message.body)


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
