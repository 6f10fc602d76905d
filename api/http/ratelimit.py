"""Per-key rate limiting: a token bucket per API key (or per unknown key's hash)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict

# Buckets remembered at once; the least recently used are forgotten (and start full again).
BUCKETS_MAX = 100_000


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def retry_after_s(self, key: str, now: float | None = None) -> int:
        """0 when the request may go ahead (and takes a token), else seconds to wait."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > BUCKETS_MAX:
                self._buckets.popitem(last=False)
            return 0
        self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / self.rate_per_s))
