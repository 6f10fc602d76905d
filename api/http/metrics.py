"""Prometheus metrics in the text exposition format, with no dependency beyond the stdlib."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable

# Request latency buckets, in seconds.
HISTOGRAM = "ledger_http_request_duration_seconds"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_counts: dict[str, list[int]] = defaultdict(
            lambda: [0] * (len(LATENCY_BUCKETS_S) + 1)
        )
        self.latency_sums: dict[str, float] = defaultdict(float)
        self.gauges: dict[str, Callable[[], float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.latency_counts[route][bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sums[route] += seconds

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        lines = [
            "# HELP ledger_http_requests_total HTTP requests by method, route and status.",
            "# TYPE ledger_http_requests_total counter",
        ]
        for (method, route, status), count in sorted(self.requests.items()):
            labels = f'method="{method}",route="{route}",status="{status}"'
            lines.append(f"ledger_http_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP ledger_http_request_duration_seconds Request latency by route.",
            "# TYPE ledger_http_request_duration_seconds histogram",
        ]
        for route, counts in sorted(self.latency_counts.items()):
            cumulative = 0
            for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                labels = f'route="{route}",le="{le}"'
                lines.append(f"{HISTOGRAM}_bucket{{{labels}}} {cumulative}")
            lines.append(f'{HISTOGRAM}_sum{{route="{route}"}} {self.latency_sums[route]}')
            lines.append(f'{HISTOGRAM}_count{{route="{route}"}} {cumulative}')
        for name, read in sorted(self.gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"
