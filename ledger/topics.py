"""Stored topics: the names under which aggregates and their events are written, pinned.

The event store keeps each event's class as a topic, `<module>:<qualified name>`
(`ledger.account:Account.CreditsGranted`), and the library finds the class again from it.
Left to the library, a topic follows the class's module, so moving a class would change what
new events are stored as and leave old ones unreadable. `stored_as(module)` pins the topics
where they were first written: it sets each class's `TOPIC` (which the library writes
instead of the module path) and registers it (so the library resolves it without importing a
module that no longer exists). tests/integration/test_legacy_store.py reads a store written
before the classes moved.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import register_topic

T = TypeVar("T", bound=type)


def stored_as(module: str) -> Callable[[T], T]:
    """Pins the topics of an aggregate class and of every event class nested in it to
    `<module>:<qualified name>`."""

    def pin(aggregate_class: T) -> T:
        classes: list[type] = [aggregate_class, *nested_event_classes(aggregate_class)]
        for cls in classes:
            topic = f"{module}:{cls.__qualname__}"
            cls.TOPIC = topic  # type: ignore[attr-defined]
            register_topic(topic, cls)
        return aggregate_class

    return pin


def nested_event_classes(cls: type) -> list[type]:
    """The event classes defined in an aggregate's body (the library adds some of its own,
    such as `Created` and `Event`, which are stored under topics too)."""
    return [
        value
        for value in vars(cls).values()
        if inspect.isclass(value) and issubclass(value, DomainEvent)
    ]
