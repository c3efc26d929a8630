"""The domains (shop state, carts, scoring and segments, outreach, campaigns, automations,
reporting, imports, predictions, upkeep of the runtime's tables) and their kernel;
`wiring.build_registry()` says which handler reacts to what."""
