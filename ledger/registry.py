"""The registry: what each product area brings, and the tables built from it.

An area (ledger/accounts/area.py, ledger/tenants/area.py, ...) lists its commands, each with
its handler, the API scope that may send it, whether a batch may carry it, its route if it has
the standard shape, and the views its answers are; ledger/areas.py lists the areas. Everything
that used to be a table edited per command is built here from that list: the writer's handler
table, the writer process's wire types, the names stored answers are kept under, a batch's
scopes, and the HTTP routes of the standard shape (api/http/command_routes.py). Validation is
each command's own `check()`. docs/adr/0006 lists the files a new command touches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
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

    @property
    def op(self) -> str:
        return str(self.command.__struct_config__.tag)


@dataclass(frozen=True)
class Area:
    name: str
    commands: Sequence[CommandSpec]
    # Views answers are stored as (ledger_results.result_type): a name is never reused.
    views: dict[str, type[msgspec.Struct]]


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

    @property
    def command_types(self) -> tuple[type[Command], ...]:
        return tuple(self.specs)

    def spec_of(self, command: Command) -> CommandSpec:
        return self.specs[type(command)]

    def batch_specs(self) -> list[CommandSpec]:
        return [spec for spec in self.specs.values() if spec.batch]

    def routed(self) -> list[tuple[Area, CommandSpec]]:
        return [(area, spec) for area in self.areas for spec in area.commands if spec.route]
