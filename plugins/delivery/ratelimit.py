"""Token-bucket rate limiting per provider, as a generic cell rate algorithm: each send
takes the next free slot, `1/rate` apart, with up to `burst` slots taken at once. The
spacing is exact, so a 100/s limit gives 100 sends a second, not 200 in a burst.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque


class TokenBucket:
    def __init__(self, rate: float, burst: int = 1):
        if rate <= 0:
            raise ValueError("rate must be positive (use no bucket for unlimited)")
        self.interval = 1.0 / rate
        self.tolerance = max(burst - 1, 0) * self.interval
        self._next = 0.0
        self._lock = asyncio.Lock()
        # Release times of the last `rate` sends (+ burst): never more than that in 1 s.
        self._cap = math.ceil(rate) + max(burst - 1, 0) if rate >= 1 else 0
        self._recent: deque[float] = deque(maxlen=self._cap or 1)

    async def acquire(self) -> None:
        """Wait for the next slot. Slots keep their ideal spacing (a late wake-up does not
        lower the rate), and the last second's releases are kept so that a late wake-up
        cannot let more than the limit out within any one second either."""
        loop = asyncio.get_running_loop()
        async with self._lock:
            now = loop.time()
            slot = max(self._next, now - self.tolerance)
            if self._cap and len(self._recent) == self._cap:
                slot = max(slot, self._recent[0] + 1.0)
            if slot > now:
                await asyncio.sleep(slot - now)
                now = loop.time()
            self._next = slot + self.interval
            self._recent.append(now)
