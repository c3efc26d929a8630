"""Upkeep of the runtime's own tables (the inbox pruned past its horizon)."""
