"""The one error a bad configuration raises: a key path and a reason, on one line."""


class ConfigError(Exception):
    """Raised for a configuration that cannot start the daemon (exit status 2)."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason
