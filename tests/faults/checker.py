"""What the ledger holds, against what the service acknowledged.

(a) Every acknowledged command's entry is in the ledger exactly once (found by the key in its
    metadata) at the position its answer gave; a rejected command left nothing; no entry is
    there without a command. Checked twice: on the event store (`python -m api replay`, the
    record) and on the read models (`GET /v1/history` as NDJSON), which must also agree.
(b) Each account's balance is what its acknowledged commands imply.
(c) `GET /v1/audit/verify` (the service's own replay against its read models) is ok.
(d) NATS: every entry of the event store is on the stream (missing), once (doubled: the same
    position twice, which JetStream's duplicate window should have dropped), nothing else
    (extra), and per account in increasing version order (out of order).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.jetstream import Message
from tests.faults.load import Command
from tests.faults.serve import ROOT

ENTRY_SCHEMA = "ledger.entry.v1"
REPLAY_TIMEOUT_S = 120
SAMPLES_MAX = 5  # examples of each kind of finding kept for the failure message


@dataclass
class Findings:
    counts: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, kind: str, sample: Any, count: int = 1) -> None:
        self.counts[kind] += count
        kept = self.samples.setdefault(kind, [])
        if len(kept) < SAMPLES_MAX:
            kept.append(sample)


def replay_event_store(environ: dict[str, str], tenant_id: str, out: Path) -> list[dict[str, Any]]:
    """The tenant's history as the event store holds it, by the `replay` command."""
    subprocess.run(
        [sys.executable, "-m", "api", "replay", "--tenant", tenant_id, "--out", str(out)],
        env=environ,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=REPLAY_TIMEOUT_S,
    )
    return [json.loads(line) for line in out.read_text().splitlines() if line]


def marker(entry: dict[str, Any]) -> str | None:
    metadata = entry.get("metadata") or {}
    key = metadata.get("k")
    return key if isinstance(key, str) else None


def check_entries(
    commands: Iterable[Command], entries: list[dict[str, Any]], accounts: list[str], where: str
) -> Findings:
    """(a) on one copy of the history: `where` names it in the findings."""
    findings = Findings()
    by_key: dict[str, list[dict[str, Any]]] = {}
    opens: Counter[str] = Counter()
    for entry in entries:
        key = marker(entry)
        if key is None:
            if entry["type"] == "open":
                opens[entry["account_id"]] += 1
            else:
                findings.add(f"{where}_phantom", entry["position"])
            continue
        by_key.setdefault(key, []).append(entry)
    for account_id in accounts:
        if opens[account_id] != 1:
            findings.add(f"{where}_opens_wrong", (account_id, opens[account_id]))
    known = set()
    for command in commands:
        known.add(command.key)
        found = by_key.get(command.key, [])
        if command.outcome == "acknowledged":
            if not found:
                findings.add(f"{where}_lost", command.key)
            elif len(found) > 1:
                findings.add(f"{where}_doubled", command.key)
            elif found[0]["position"] != command.position:
                findings.add(f"{where}_answer_differs", (command.key, command.position))
        elif command.outcome == "rejected" and found:
            findings.add(f"{where}_phantom", command.key)
        elif command.outcome != "acknowledged" and found:
            findings.add(f"{where}_unresolved_applied", command.key)
    for key in set(by_key) - known:
        findings.add(f"{where}_phantom", key)
    return findings


def same_history(store: list[dict[str, Any]], read_models: list[dict[str, Any]]) -> Findings:
    """The read models hold the event store's entries, no more, with the same figures."""
    findings = Findings()
    fields = ("position", "account_id", "type", "amount", "balance", "held", "version")
    left = {e["position"]: tuple(e[f] for f in fields) for e in store}
    right = {e["position"]: tuple(e[f] for f in fields) for e in read_models}
    for position in sorted(set(left) | set(right)):
        if left.get(position) != right.get(position):
            findings.add("read_model_mismatches", position)
    return findings


def check_balances(
    commands: Iterable[Command],
    balances: dict[str, int],
    store: list[dict[str, Any]],
) -> Findings:
    """(b) the balance each account shows, and the one its last stored entry carries, equal
    the sum of what its acknowledged commands changed."""
    findings = Findings()
    implied: Counter[str] = Counter({account_id: 0 for account_id in balances})
    for command in commands:
        if command.outcome == "acknowledged":
            implied[command.account_id] += command.credits
    last_stored: dict[str, int] = {}
    for entry in sorted(store, key=lambda e: e["position"]):
        last_stored[entry["account_id"]] = entry["balance"]
    for account_id, balance in balances.items():
        if balance != implied[account_id] or last_stored.get(account_id) != implied[account_id]:
            findings.add(
                "balance_mismatches",
                (account_id, balance, last_stored.get(account_id), implied[account_id]),
            )
    return findings


def check_stream(history: list[dict[str, Any]], messages: list[Message] | None) -> Findings:
    """(d) the stream against the history."""
    findings = Findings()
    positions = {entry["position"] for entry in history}
    if messages is None:
        findings.add("nats_unreadable", "the stream did not answer")
        findings.add("nats_missing", "all", len(positions))
        return findings
    seen: set[int] = set()
    last_version: dict[str, int] = {}
    for message in messages:
        if message.schema != ENTRY_SCHEMA:
            continue
        if message.position in seen:
            findings.add("nats_doubled", message.position)
            continue
        seen.add(message.position)
        if message.position not in positions:
            findings.add("nats_extra", message.position)
        if message.version <= last_version.get(message.account_id, 0):
            findings.add("nats_out_of_order", (message.account_id, message.version))
        last_version[message.account_id] = max(
            message.version, last_version.get(message.account_id, 0)
        )
    for position in sorted(positions - seen):
        findings.add("nats_missing", position)
    findings.counts["nats_messages"] = len(messages)
    return findings


def merge(*parts: Findings) -> Findings:
    merged = Findings()
    for part in parts:
        merged.counts.update(part.counts)
        for kind, samples in part.samples.items():
            merged.samples.setdefault(kind, []).extend(samples[:SAMPLES_MAX])
    return merged
