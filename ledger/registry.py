"""The registry: what each product area brings, and the tables built from it.

An area (ledger/accounts/area.py, ledger/tenants/area.py, ...) lists its commands, each with
its handler, the API scope that may send it, whether a batch may carry it, its route if it has
the standard shape, and the views its answers are; ledger/areas.py lists the areas. Everything
that used to be a table edited per command is built here from that list: the writer's handler
table, the writer process's wire types, the names stored answers are kept under, a batch's
scopes, and the HTTP routes of the standard shape (api/http/command_routes.py). Validation is
each command's own `check()`. docs/adr/0006 lists the files a new command touches.

An area also lists its schedules (docs/adr/0007): for each kind of due item (a hold's expiry,
a lot's), which stored events add or clear one, and which command acts on it once it is due.
The scheduler's read model of due times (projections/due_times.py) and its sweep
(projections/scheduler.py) are built from that list, so a later area's renewals or retries
are one `Schedule` in its area.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from ledger.commands import Command, Envelope
from ledger.outcome import Outcome

Handler = Callable[[Envelope[Any], Any], Outcome]
# The stored answers a command may replay (idempotency is the writer's): one query per batch
# finds them all (ledger/writer/session.py).
ResultKeys = Callable[[Envelope[Any]], Iterable[UUID]]
# The aggregate a command creates when it is new: one query per batch finds which exist.
Creates = Callable[[Envelope[Any]], UUID | None]
# The aggregates a command reads: those no writer has cached are loaded with the batch's
# others, in two queries (the scheduler's expiries of accounts nobody touched lately).
Loads = Callable[[Envelope[Any]], Iterable[UUID]]

# Where a command's idempotency keys are kept: a client's keys, or the scheduler's own, which
# no client key can collide with (ledger_results ids are uuid5(tenant, space, key)).
CLIENT_KEYS = "idempotency"
SCHEDULE_KEYS = "schedule"
# A due item's kind and key are the areas' own names and ids: bounded so that a due key (the
# idempotency key of the command acting on it) stays within IDEMPOTENCY_KEY_LENGTH_MAX.
DUE_KIND_LENGTH_MAX = 32
DUE_ITEM_KEY_LENGTH_MAX = 160
# What an item's command needs beyond its key (a top-up retry's topup_id and attempt): a few
# ids, never a payload.
DUE_DETAIL_LENGTH_MAX = 200


@dataclass(frozen=True)
class Route:
    """An HTTP route of the standard shape: the path's parameters fill the command's fields of
    the same names, the body (if any) is the command, the Idempotency-Key header its key."""

    method: Literal["POST", "PUT"]
    path: str  # Litestar's syntax: "/v1/accounts/{account_id:str}/grants"
    summary: str
    description: str | None = None
    status: int = 201  # when the command created something; 200 otherwise
    errors: tuple[str, ...] = ()  # problem codes beyond the common ones
    body: Literal["required", "optional", "none"] = "required"
    # Another status the route answers with its view (an account that exists already).
    also: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandSpec:
    command: type[Command]
    handler: Handler
    answer: type[msgspec.Struct]  # the view a success answers with
    # The scope a tenant's key needs; None: only the platform operator sends it.
    scope: str | None = None
    batch: bool = False  # POST /v1/batch may carry it
    query: bool = False  # a read through the writer: it records nothing
    route: Route | None = None
    result_keys: ResultKeys | None = None
    creates: Creates | None = None
    loads: Loads | None = None
    key_space: str = CLIENT_KEYS  # SCHEDULE_KEYS: only the scheduler sends it, under due keys

    @property
    def op(self) -> str:
        return str(self.command.__struct_config__.tag)


@dataclass(frozen=True)
class DueChange:
    """What one stored event does to one due item: sets its due time (and its `detail`), or
    (`due_at` None) clears it, its work done by that event."""

    kind: str
    key: str
    tenant_id: str
    account_id: str
    due_at: datetime | None
    detail: str = ""


@dataclass(frozen=True)
class DueItem:
    """Something that falls due: `kind` names the area's schedule, `key` the thing (a hold's
    id, a lot's, the account whose top-up request is open), `due_at` when its command must
    run, `detail` what that command needs beyond the key (a top-up's id and next attempt),
    as the event that set it said."""

    tenant_id: str
    account_id: str
    kind: str
    key: str
    due_at: datetime
    detail: str = ""


def due_key(item: DueItem) -> str:
    """The deterministic idempotency key of the command acting on a due item: the same item
    due at the same time always makes the same key, so whichever scheduler sends it, however
    often (a restart, a failover mid-sweep), it is applied once."""
    assert len(item.key) <= DUE_ITEM_KEY_LENGTH_MAX, item
    due_at = item.due_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{item.kind}:{due_at}:{item.key}"


@dataclass(frozen=True)
class Schedule:
    """One kind of due item of an area: the stored events that add or clear one (each a class
    with its pinned `TOPIC`), what one such event does (`changes`), and the command that acts
    on an item once it is due (`command`, its idempotency key `due_key(item)`; its spec has
    `key_space=SCHEDULE_KEYS`). A command that finds nothing left to do (a lot used up before
    its expiry) still clears its item once it has committed.

    `reads_wait`: whether a read of the read models waits until this kind's due items are
    recorded (projections/due_times.py `ExpiryReads`): yes when their commands change what a
    read shows (an expiry changes balances); a top-up's retry records a request of 0 credits,
    so reads do not wait for it (nor fail while the scheduler is down)."""

    kind: str
    events: tuple[type, ...]
    changes: Callable[[Any], Iterable[DueChange]]
    command: Callable[[DueItem], Command]
    reads_wait: bool = True


@dataclass(frozen=True)
class Area:
    name: str
    commands: Sequence[CommandSpec]
    # Views answers are stored as (ledger_results.result_type): a name is never reused.
    views: dict[str, type[msgspec.Struct]]
    schedules: Sequence[Schedule] = ()


class Registry:
    """The tables built from the areas; refuses two commands with one `op` or one view name
    twice, which would make a stored answer or a wire message ambiguous."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self.areas = tuple(areas)
        self.specs: dict[type[Command], CommandSpec] = {}
        self.by_op: dict[str, CommandSpec] = {}
        self.view_types: dict[str, type[msgspec.Struct]] = {}
        for area in self.areas:
            for spec in area.commands:
                if spec.op in self.by_op or spec.command in self.specs:
                    raise ValueError(f"command op {spec.op!r} is registered twice")
                self.specs[spec.command] = spec
                self.by_op[spec.op] = spec
            for name, view in area.views.items():
                if name in self.view_types or view in self.view_types.values():
                    raise ValueError(f"view {name!r} is registered twice")
                self.view_types[name] = view
        self.view_names = {view: name for name, view in self.view_types.items()}
        for spec in self.specs.values():
            if spec.answer not in self.view_names:
                raise ValueError(f"{spec.op} answers {spec.answer.__name__}, a view of no area")
        self.schedules: dict[str, Schedule] = {}
        # The schedules each stored topic adds or clears due items of.
        self.schedules_by_topic: dict[str, list[Schedule]] = {}
        for area in self.areas:
            for schedule in area.schedules:
                self._add_schedule(schedule)

    def _add_schedule(self, schedule: Schedule) -> None:
        if schedule.kind in self.schedules:
            raise ValueError(f"schedule {schedule.kind!r} is registered twice")
        if not 1 <= len(schedule.kind) <= DUE_KIND_LENGTH_MAX:
            raise ValueError(f"schedule kind {schedule.kind!r}: 1-{DUE_KIND_LENGTH_MAX}")
        self.schedules[schedule.kind] = schedule
        for event_class in schedule.events:
            topic = event_class.TOPIC  # type: ignore[attr-defined]
            self.schedules_by_topic.setdefault(topic, []).append(schedule)

    def topics_of(self, kinds: Iterable[str]) -> list[str]:
        """The stored topics whose events add or clear due items of these kinds."""
        wanted = set(kinds)
        return sorted(
            topic
            for topic, schedules in self.schedules_by_topic.items()
            if any(schedule.kind in wanted for schedule in schedules)
        )

    @property
    def read_wait_kinds(self) -> list[str]:
        """The kinds of due item a read of the read models waits for (`Schedule.reads_wait`)."""
        return sorted(kind for kind, schedule in self.schedules.items() if schedule.reads_wait)

    @property
    def command_types(self) -> tuple[type[Command], ...]:
        return tuple(self.specs)

    def spec_of(self, command: Command) -> CommandSpec:
        return self.specs[type(command)]

    def batch_specs(self) -> list[CommandSpec]:
        return [spec for spec in self.specs.values() if spec.batch]

    def scheduled_command(self, item: DueItem) -> Command:
        """The command that acts on a due item, under its deterministic key."""
        command = self.schedules[item.kind].command(item)
        spec = self.spec_of(command)
        assert spec.key_space == SCHEDULE_KEYS, f"{spec.op} is not sent under due keys"
        return msgspec.structs.replace(command, idempotency_key=due_key(item))

    def routed(self) -> list[tuple[Area, CommandSpec]]:
        return [(area, spec) for area in self.areas for spec in area.commands if spec.route]
