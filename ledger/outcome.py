"""What a handler answers: the value, whether it created something, and its account event."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import msgspec


@dataclass
class Outcome:
    """A command's answer: the value, whether it created something, whether it is a stored
    answer given again, and the account event it stands for (whose position the writer
    fills in after the commit)."""

    value: msgspec.Struct
    created: bool = True
    replayed: bool = False
    entry_ref: tuple[UUID, int] | None = None
