"""The domains (shop state, carts, scoring and segments, outreach, campaigns, automations,
reporting, imports, predictions) and their kernel; `wiring.build_registry()` says which
handler reacts to what."""
