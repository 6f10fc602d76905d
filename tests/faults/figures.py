"""A test's figures: one printed line, a JSON file under .data/faults/, and the promises broken.

The figures are recorded before any assertion, so a failing (or xfail) test still reports what
it saw. `broken_promises` turns them into the list of rules that did not hold; a test asserts
that list is empty, so its failure message names every broken rule at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tests.faults.serve import ROOT

FIGURES_DIR = ROOT / ".data" / "faults"
# A burst smaller than this proves too little: the test fails rather than pass on nothing.
ACKNOWLEDGED_MIN = 1_000
# A role killed by a test, or a dependency back, must be doing its work again within this
# (generous: process start-up and the supervisor's back-off; the store's own bound is tighter).
RECOVERY_DEADLINE_S = 15.0
RECOVERY_KINDS = ("commands", "read_models", "nats")
# Every count here must be zero, whatever the test.
MUST_BE_ZERO = (
    "unresolved",
    "rejected_unexpected",
    "answers_500",
    "answers_other_5xx",
    "reads_500",
    "event_store_lost",
    "event_store_doubled",
    "event_store_phantom",
    "event_store_answer_differs",
    "event_store_opens_wrong",
    "read_models_lost",
    "read_models_doubled",
    "read_models_phantom",
    "read_models_answer_differs",
    "read_models_opens_wrong",
    "read_model_mismatches",
    "balance_mismatches",
    "nats_unreadable",
    "nats_missing",
    "nats_doubled",
    "nats_extra",
    "nats_out_of_order",
)


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


class Figures:
    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[str, Any] = {}
        self.samples: dict[str, list[Any]] = {}
        self.broken: list[str] = []

    def update(self, **values: Any) -> None:
        self.values.update({k: _rounded(v) for k, v in values.items()})

    def get(self, name: str, default: Any = 0) -> Any:
        return self.values.get(name, default)

    @property
    def lost(self) -> int:
        return int(self.get("event_store_lost")) + int(self.get("read_models_lost"))

    @property
    def doubled(self) -> int:
        return int(self.get("event_store_doubled")) + int(self.get("read_models_doubled"))

    def line(self) -> str:
        recovery = "/".join(
            f"{kind}:{self.get(f'{kind}_recovery_s', None)}" for kind in RECOVERY_KINDS
        )
        return (
            f"{self.name}: commands={self.get('commands')} "
            f"acknowledged={self.get('acknowledged')} rejected={self.get('rejected_4xx')} "
            f"unresolved={self.get('unresolved')} lost={self.lost} doubled={self.doubled} "
            f"5xx={self.get('answers_5xx')} 500s={self.get('answers_500')} "
            f"read_500s={self.get('reads_500')} "
            f"503s={self.get('answers_503')} nats_missing={self.get('nats_missing')} "
            f"nats_doubled={self.get('nats_doubled')} recovery_s={recovery} "
            f"duration_s={self.get('duration_s')}"
        )

    def record(self, broken: list[str]) -> None:
        """Keeps the broken promises; prints and writes the figures."""
        self.broken = broken
        print(self.line())
        self.write()

    def conclude(self, broken: list[str]) -> None:
        """Records the figures and the broken promises; fails if there are any."""
        self.record(broken)
        assert not broken, "broken promises:\n  " + "\n  ".join(broken)

    def write(self) -> Path:
        FIGURES_DIR.mkdir(parents=True, exist_ok=True)
        path = FIGURES_DIR / f"{self.name}.json"
        document = {
            "test": self.name,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "figures": self.values,
            "broken": self.broken,
            "samples": self.samples,
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def broken_promises(
    figures: Figures,
    *,
    reconnect_within_s: float | None = None,
    answer_within_s: float | None = None,
) -> list[str]:
    """The rules every fault test holds the service to, and the optional bounds: every role
    doing its work again within `reconnect_within_s` of the dependency answering, and every
    command sent while the store was down answered 503 within `answer_within_s`."""
    broken = []
    if figures.get("acknowledged") < ACKNOWLEDGED_MIN:
        broken.append(f"only {figures.get('acknowledged')} commands acknowledged")
    if figures.get("in_flight_at_fault") == 0:
        broken.append("no command was in flight when the fault struck")
    if figures.get("audit_ok") is not True:
        broken.append(f"/v1/audit/verify: {figures.get('audit', None)}")
    broken += [f"{name} = {figures.get(name)}" for name in MUST_BE_ZERO if figures.get(name)]
    for kind in RECOVERY_KINDS:
        value = figures.get(f"{kind}_recovery_s", None)
        if value is None:
            broken.append(f"{kind} never recovered from the fault")
        elif value > RECOVERY_DEADLINE_S:
            broken.append(f"{kind} recovered after {value} s (deadline {RECOVERY_DEADLINE_S} s)")
        elif reconnect_within_s is not None and value > reconnect_within_s:
            broken.append(f"{kind} recovered {value} s after the store answered again")
    if answer_within_s is not None:
        if figures.get("outage_attempts") == 0:
            broken.append("no command was in flight or sent while the store was down")
        if figures.get("outage_slow_answers"):
            broken.append(
                f"{figures.get('outage_slow_answers')} commands in flight or sent while the store "
                f"was down were not answered within {answer_within_s} s "
                f"(longest {figures.get('outage_longest_s')} s)"
            )
        if figures.get("outage_slow_reads") or figures.get("outage_reads_not_503"):
            broken.append(
                f"reads while the store was down: {figures.get('outage_slow_reads')} not "
                f"answered within {answer_within_s} s, {figures.get('outage_reads_not_503')} "
                f"answered other than 503: {figures.get('outage_read_statuses')}"
            )
        if figures.get("outage_not_503"):
            broken.append(
                f"{figures.get('outage_not_503')} commands sent while the store was down were "
                f"answered other than 503: {figures.get('outage_statuses')}"
            )
    return broken
