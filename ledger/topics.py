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
    """Pins the topic of an aggregate class to `<module>:<its name>`, and of each event class
    it holds to `<module>:<its name>.<the event's attribute name>`: the names the library
    gave them when they were nested in the aggregate's body in that module."""

    def pin(aggregate_class: T) -> T:
        name = aggregate_class.__name__
        classes: list[tuple[str, type]] = [(f"{module}:{name}", aggregate_class)]
        for attribute, event_class in event_classes_of(aggregate_class).items():
            classes.append((f"{module}:{name}.{attribute}", event_class))
        for topic, cls in classes:
            cls.TOPIC = topic  # type: ignore[attr-defined]
            register_topic(topic, cls)
        return aggregate_class

    return pin


def event_classes_of(cls: type) -> dict[str, type]:
    """The event classes an aggregate holds, by attribute name (the library adds some of its
    own, such as `Created` and `Event`, which are stored under topics too)."""
    return {
        attribute: value
        for attribute, value in vars(cls).items()
        if inspect.isclass(value) and issubclass(value, DomainEvent)
    }
