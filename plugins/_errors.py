"""Typed delivery errors: a plugin raises, the pipeline decides (retry, fail over, give up).

Like arq's `Retry`: the plugin says what kind of failure it saw, never what to do about it.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A provider did not accept a message. `code` is the provider's own error code."""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


class RetryableError(DeliveryError):
    """Worth trying again later (timeouts, 429, 5xx). `retry_after` is the provider's hint
    in seconds (a Retry-After header), or None to use the pipeline's backoff."""

    def __init__(self, message: str, *, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Never worth repeating (invalid number, unapproved template, rejected content)."""


class WebhookRejected(Exception):
    """A webhook request that must be refused with `status` (401 bad signature, 400 ...)."""

    def __init__(self, reason: str, status: int = 400):
        super().__init__(reason)
        self.status = status
