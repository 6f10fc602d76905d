"""Request bodies: decoded once, strictly, into the struct the route takes.

Litestar decodes a `data` body by itself laxly ("10" would do for an amount) and then converts
it again; a route here names its struct with `dto=StrictBody[T]` instead, and the body is
decoded by msgspec straight into T with no coercion, its bounds checked as it is (the struct's
`Meta`). The OpenAPI document shows T as the request body, as Litestar would.

Strictly means also: a body that is not valid UTF-8 is refused (msgspec raises
UnicodeDecodeError for it, which is no DecodeError), and so is an object that names a key twice
(`{"amount": 1, "amount": 999}`: msgspec, like most parsers, keeps the last one, and a proxy or
a log may have read the first). Both are 400 `validation_error`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Generator
from typing import Any, ClassVar, Generic, TypeVar

import msgspec
from litestar.dto import AbstractDTO
from litestar.dto._backend import DTOBackend
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.openapi.spec import Reference, Schema
from litestar.typing import FieldDefinition

from ledger.errors import InvalidCommandError

T = TypeVar("T")

_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decode_strictly(body: bytes, cls: type[T]) -> T:
    """Decodes a body with no type coercion: "10" is not an amount."""
    decoder = _decoders.get(cls)
    if decoder is None:
        decoder = _decoders.setdefault(cls, msgspec.json.Decoder(cls))
    try:
        decoded: T = decoder.decode(body)
    except msgspec.ValidationError as error:
        raise InvalidCommandError(str(error)) from None
    except msgspec.DecodeError:
        raise InvalidCommandError("the body is not valid JSON") from None
    except UnicodeDecodeError:
        raise InvalidCommandError("the body is not valid UTF-8") from None
    except RecursionError:
        raise InvalidCommandError("the body is nested too deeply") from None
    refuse_duplicate_keys(body)
    return decoded


class DuplicateKeyError(ValueError):
    pass


def _pairs_once(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)


_duplicate_finder = json.JSONDecoder(object_pairs_hook=_pairs_once)


def refuse_duplicate_keys(body: bytes) -> None:
    """Raises InvalidCommandError when an object of the (already decoded, so valid) JSON body
    names a key twice. The standard library's C scanner hands each object's pairs over before
    it builds a dict: a few microseconds for a command's body."""
    if body.count(b'"') < 4:  # fewer than two keys anywhere
        return
    try:
        _duplicate_finder.decode(body.decode())
    except DuplicateKeyError as error:
        raise InvalidCommandError(f"the body names the key {error.args[0]!r} twice") from None
    except RecursionError:
        raise InvalidCommandError("the body is nested too deeply") from None
    except ValueError:  # a number past int's 4,300 digits, say: msgspec took it as a float
        raise InvalidCommandError("the body holds a value that cannot be read exactly") from None


@functools.cache
def documented(model: type[Any], excluded: frozenset[str]) -> type[Any]:
    """What the OpenAPI document shows of a body decoded into `model`: its fields but those
    the route gives from elsewhere (the path, the Idempotency-Key header), and no `op` tag (a
    batch item's). Only a description: the body is decoded into `model` itself."""
    if not excluded and not model.__struct_config__.tag:
        return model
    fields: list[tuple[str, Any, Any]] = []
    for info in msgspec.structs.fields(model):
        if info.name in excluded:
            continue
        if info.default is not msgspec.NODEFAULT:
            fields.append((info.name, info.type, info.default))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append(
                (info.name, info.type, msgspec.field(default_factory=info.default_factory))
            )
        else:
            fields.append((info.name, info.type, msgspec.NODEFAULT))
    shown = msgspec.defstruct(
        f"{model.__name__}Body",
        [
            (name, kind) if default is msgspec.NODEFAULT else (name, kind, default)
            for name, kind, default in fields
        ],
        kw_only=True,
        frozen=True,
        forbid_unknown_fields=True,
        module=model.__module__,
    )
    shown.__doc__ = model.__doc__
    return shown


class StrictBody(AbstractDTO[T], Generic[T]):
    """`dto=StrictBody[T]`: the body decoded by `decode_strictly` into T. With `optional`,
    an empty body is None (the route's defaults apply). `excluded`: fields of T the route
    gives from elsewhere, left out of the OpenAPI document's body (see `body_of`)."""

    optional: ClassVar[bool] = False
    excluded: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()  # no transfer model: the struct itself is decoded

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: type[DTOBackend] | None = None,
    ) -> None:
        """Nothing to build: decoding needs only the struct."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Reference | Schema:
        model: Any = cls.model_type
        shown = documented(model, cls.excluded)
        schema: Reference | Schema = schema_creator.for_field_definition(
            FieldDefinition.from_annotation(shown)
        )
        return schema

    def decode_bytes(self, value: bytes) -> Any:
        if not value and self.optional:
            return None
        return decode_strictly(value, self.model_type)

    def decode_builtins(self, value: dict[str, Any]) -> Any:
        raise InvalidCommandError("the body must be JSON")


def body_of(model: type[Any], *, excluded: tuple[str, ...] = (), optional: bool = False) -> Any:
    """The DTO of a route whose body is `model`, less the `excluded` fields."""
    base = StrictBody[model]  # type: ignore[valid-type]
    return type(
        base.__name__,
        (base,),
        {"excluded": frozenset(excluded), "optional": optional},
    )
