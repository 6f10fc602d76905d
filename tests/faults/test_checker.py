"""The checker can fail: given a ledger that lost, doubled or invented entries, or a stream that
missed, repeated or reordered them, it counts each. (No I/O: made-up commands and entries.)"""

from __future__ import annotations

from typing import Any

from tests.faults import checker
from tests.faults.figures import Figures, broken_promises
from tests.faults.jetstream import Message
from tests.faults.load import Attempt, Command

ACCOUNT = "a@example.com"


def acknowledged(key: str, kind: str, amount: int, position: int) -> Command:
    command = Command(key, ACCOUNT, kind, amount, outcome="acknowledged", position=position)
    command.attempts.append(Attempt("http://x", 0.0, 1.0, status=201))
    return command


def entry(position: int, version: int, balance: int, key: str | None, kind: str) -> dict[str, Any]:
    return {
        "position": position,
        "account_id": ACCOUNT,
        "type": kind,
        "amount": 0,
        "balance": balance,
        "held": 0,
        "version": version,
        "metadata": {"k": key} if key else None,
    }


def message(position: int, version: int) -> Message:
    return Message(
        position, "ledger.t.a.grant", position, ACCOUNT, version, "grant", "ledger.entry.v1"
    )


COMMANDS = [
    acknowledged("k1", "grant", 100, 2),
    acknowledged("k2", "consume", 10, 3),
    acknowledged("k3", "consume", 5, 4),
]
rejected = Command("k4", ACCOUNT, "consume", 10**14, outcome="rejected")
COMMANDS.append(rejected)


def test_a_ledger_that_holds_every_acknowledged_command_once_has_no_findings() -> None:
    store = [
        entry(1, 1, 0, None, "open"),
        entry(2, 2, 100, "k1", "grant"),
        entry(3, 3, 90, "k2", "consume"),
        entry(4, 4, 85, "k3", "consume"),
    ]
    found = checker.merge(
        checker.check_entries(COMMANDS, store, [ACCOUNT], "event_store"),
        checker.check_balances(COMMANDS, {ACCOUNT: 85}, store),
        checker.check_stream(store, [message(p, p) for p in (1, 2, 3, 4)]),
    )
    assert +found.counts == {"nats_messages": 4}


def test_a_lost_a_doubled_a_phantom_and_a_rejected_but_applied_entry_are_each_counted() -> None:
    store = [
        entry(1, 1, 0, None, "open"),
        entry(2, 2, 100, "k1", "grant"),
        entry(3, 3, 90, "k2", "consume"),
        entry(5, 4, 80, "k2", "consume"),  # k2 twice; k3 never
        entry(6, 5, 70, "nobody", "consume"),  # no command has this key
        entry(7, 6, 60, "k4", "consume"),  # rejected, yet there
    ]
    found = checker.check_entries(COMMANDS, store, [ACCOUNT], "event_store").counts
    assert (found["event_store_lost"], found["event_store_doubled"]) == (1, 1)
    assert found["event_store_phantom"] == 2
    balances = checker.check_balances(COMMANDS, {ACCOUNT: 60}, store).counts
    assert balances["balance_mismatches"] == 1


def test_a_stream_that_missed_repeated_and_reordered_entries_is_counted() -> None:
    history = [entry(p, p, 0, None, "open") for p in (1, 2, 3, 4, 5)]
    stream = [message(1, 1), message(3, 3), message(2, 2), message(3, 3), message(9, 9)]
    found = checker.check_stream(history, stream).counts
    assert found["nats_missing"] == 2  # 4 and 5
    assert found["nats_doubled"] == 1  # 3 again
    assert found["nats_out_of_order"] == 1  # version 2 after 3
    assert found["nats_extra"] == 1  # 9 is in no history
    assert checker.check_stream(history, None).counts["nats_missing"] == 5


def test_too_small_a_burst_or_a_fault_between_commands_breaks_the_promises() -> None:
    figures = Figures("made_up")
    figures.update(
        acknowledged=10,
        in_flight_at_fault=0,
        audit_ok=True,
        commands_recovery_s=0.1,
        read_models_recovery_s=0.1,
        nats_recovery_s=None,
    )
    broken = broken_promises(figures, reconnect_within_s=1.0)
    assert broken == [
        "only 10 commands acknowledged",
        "no command was in flight when the fault struck",
        "nats never recovered from the fault",
    ]
