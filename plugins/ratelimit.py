"""Token-bucket rate limiting per provider, as a generic cell rate algorithm: each send
takes the next free slot, `1/rate` apart, with up to `burst` slots taken at once. The
spacing is exact, so a 100/s limit gives 100 sends a second, not 200 in a burst.
"""

from __future__ import annotations

import asyncio


class TokenBucket:
    def __init__(self, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError("rate must be positive (use no bucket for unlimited)")
        self.interval = 1.0 / rate
        self.tolerance = max(burst - 1, 0) * self.interval
        self._next = 0.0

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(self._next, now - self.tolerance)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
