"""What a message would cost with the provider that would carry it, before it is queued:
the configured providers' own estimates (`stormd_estimate_cost`, their rate cards), so the
cost preview, the ROI guard and "cheapest" routing use the prices the delivery log will
record.

The provider asked is the first of the channel's `[channels]` list that loaded (the one a
message goes to unless it fails over). A provider that charges nothing itself and records
list prices (`ProviderInfo.list_price`: the outbox) has no rate card: None, and the caller
uses `campaigns.message_cost`. Plugins are loaded once per settings object.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from stormd.config.errors import ConfigError
from stormd.config.settings import Settings
from stormd.plugins import Outgoing
from stormd.plugins.delivery.manager import ChannelPlugins, Provider, load_plugins

log = logging.getLogger("stormd.plugins")

_LOADED: dict[int, tuple[Settings, ChannelPlugins | None]] = {}
KEEP = 8  # settings objects remembered (a process has one; tests build many)


def plugins_for(settings: Settings) -> ChannelPlugins | None:
    """The channel plugins as `settings` configure them (None when they refuse it: the
    daemon would not have started, so only a tool reading another config meets this)."""
    hit = _LOADED.get(id(settings))
    if hit is not None and hit[0] is settings:
        return hit[1]
    try:
        plugins: ChannelPlugins | None = load_plugins(settings)
    except ConfigError as exc:
        log.warning("provider prices unavailable (%s); list prices are used", exc)
        plugins = None
    while len(_LOADED) >= KEEP:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[id(settings)] = (settings, plugins)
    return plugins


class RateCards:
    """Per channel, the price of one message from the provider that would send it."""

    def __init__(self, settings: Settings, plugins: ChannelPlugins | None = None):
        self.settings = settings
        self.plugins = plugins if plugins is not None else plugins_for(settings)
        self._providers: dict[str, Provider | None] = {}

    def provider(self, channel: str) -> Provider | None:
        """The provider a message on `channel` goes to first (None: none loaded)."""
        if channel not in self._providers:
            found = (self.plugins.for_channel(self.settings, channel)
                     if self.plugins is not None else [])
            self._providers[channel] = found[0] if found else None
        return self._providers[channel]

    def priced(self, channel: str) -> bool:
        """Whether that provider has a rate card of its own (not list prices)."""
        provider = self.provider(channel)
        return provider is not None and not provider.info.list_price

    async def estimate(self, store_id: str, channel: str, body: str, *, marketing: bool = True,
                       locale: str = "bn", data: dict[str, Any] | None = None,
                       template: str | None = None) -> Decimal | None:
        """The provider's price for this message; None when it has no rate card."""
        provider = self.provider(channel)
        if provider is None or provider.info.list_price or self.plugins is None:
            return None
        message = Outgoing(message_id=0, store_id=store_id, channel=channel, to="", body=body,
                           idempotency_key="estimate", template=template, locale=locale,
                           marketing=marketing, data=data or {})
        cost = await self.plugins.call(provider, "stormd_estimate_cost", message=message,
                                       config=provider.config)
        return Decimal(cost or 0)
