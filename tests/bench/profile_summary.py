"""Summarises a py-spy profile in raw (collapsed stacks) form, as `run.py --profile` writes it.

    .venv/bin/python tests/bench/profile_summary.py docs/bench/results/<run>-profile-scenario1.txt [TOP [THREAD]]

Prints the share of samples per thread, per package (by the innermost frame) and the functions
with the most samples, inclusive (on the stack) and self (innermost).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")
PACKAGES = (
    "litestar",
    "uvicorn",
    "h11",
    "httptools",
    "eventsourcing",
    "psycopg",
    "asyncpg",
    "nats",
    "msgspec",
    "structlog",
    "asyncio",
    "threading",
    "concurrent",
    "logging",
    "json",
    "uuid",
)
OURS = ("ledger/", "api/", "projections/", "events/")


def package_of(file: str) -> str:
    file = file if file.startswith("/") else "/" + file  # py-spy writes paths relative to sys.path
    for name in OURS:
        if f"/{name}" in file or file.startswith(name):
            return name.rstrip("/")
    for name in PACKAGES:
        if f"/{name}/" in file or file.endswith(f"/{name}.py"):
            return name
    return "other"


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['func']} ({file})"


def main(path: Path, top: int = 25, only_thread: str = "") -> None:
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread ")), "thread ?")
        if only_thread not in thread:
            continue
        code = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not code:
            continue
        total += count
        threads[thread] += count
        innermost = code[-1]
        match = FRAME.match(innermost)
        packages[package_of(match["file"] if match else innermost)] += count
        self_time[short(innermost)] += count
        for frame in {short(f) for f in code}:
            inclusive[frame] += count
    print(f"{total:,} samples (non-idle) in {path}")
    print("\nby thread:")
    for name, count in threads.most_common(8):
        print(f"  {count / total:6.1%}  {name}")
    print("\nby package of the innermost frame:")
    for name, count in packages.most_common(16):
        print(f"  {count / total:6.1%}  {name}")
    print(f"\ntop {top} inclusive:")
    for name, count in inclusive.most_common(top):
        print(f"  {count / total:6.1%}  {name}")
    print(f"\ntop {top} self:")
    for name, count in self_time.most_common(top):
        print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main(
        Path(sys.argv[1]),
        int(sys.argv[2]) if len(sys.argv) > 2 else 25,
        sys.argv[3] if len(sys.argv) > 3 else "",
    )
