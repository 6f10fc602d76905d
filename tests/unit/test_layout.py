"""The layout's rules (docs/architecture.md), read from the source: which package may import
which, no import cycles between files, settings read in one place, every command registered."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import msgspec

from ledger.areas import REGISTRY
from ledger.commands import Command

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "events", "projections", "api")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports_of(path: Path) -> set[str]:
    """The modules a file imports when it is loaded: its top-level imports, those under a
    top-level `if` (TYPE_CHECKING included) too; imports inside functions are left out."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.If):
            statements.extend(node.body + node.orelse)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def internal_graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {imported for imported in imports_of(path) if imported in known and imported != name}
        for name, path in known.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def importers_of(prefix: str, within: str) -> dict[str, set[str]]:
    """Modules under `within` that import something under `prefix`, with what they import."""
    return {
        name: hits
        for name, path in modules().items()
        if name.startswith(within)
        and (
            hits := {
                imported
                for imported in imports_of(path)
                if imported == prefix or imported.startswith(prefix + ".")
            }
        )
    }


def test_no_two_files_import_each_other_through_any_chain() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles(internal_graph()) == []


def test_the_ledger_knows_nothing_of_http_sql_drivers_nats_or_the_other_packages() -> None:
    for foreign in ("api", "events", "projections", "litestar", "asyncpg", "nats", "uvicorn"):
        assert importers_of(foreign, "ledger") == {}, foreign


def test_events_use_only_the_shared_tailer_of_the_projections() -> None:
    used = {hit for hits in importers_of("projections", "events").values() for hit in hits}
    assert used <= {"projections.tailer", *(f"projections.tailer.{n}" for n in dir_of_tailer())}


def dir_of_tailer() -> list[str]:
    import projections.tailer

    return [name for name in vars(projections.tailer) if not name.startswith("_")]


def test_projections_and_events_know_nothing_of_the_api() -> None:
    assert importers_of("api", "projections") == {}
    assert importers_of("api", "events") == {}
    assert importers_of("litestar", "projections") == {}


def test_only_the_composition_root_of_the_http_app_starts_the_roles() -> None:
    assert set(importers_of("api.roles", "api.http")) <= {"api.http.app"}


def reads_the_environment(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ("environ", "getenv", "environb")
        ):
            return True
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and {alias.name for alias in node.names} & {"environ", "getenv", "environb"}
        ):
            return True
    return False


def test_only_the_settings_module_reads_the_environment() -> None:
    readers = {name for name, path in modules().items() if reads_the_environment(path)}
    assert readers <= {"api.settings"}


def command_classes() -> set[type[Command]]:
    """Every command struct defined in an area's commands module."""
    found: set[type[Command]] = set()
    for name in modules():
        if name.startswith("ledger.") and name.endswith(".commands") and name != "ledger.commands":
            module = __import__(name, fromlist=["*"])
            found.update(
                value
                for value in vars(module).values()
                if inspect.isclass(value)
                and issubclass(value, Command)
                and value.__module__ == name
                and value.__struct_config__.tag is not None
            )
    return found


def test_every_command_an_area_defines_is_registered_with_a_handler() -> None:
    assert command_classes() == set(REGISTRY.command_types)
    for spec in REGISTRY.specs.values():
        assert callable(spec.handler), spec.op


SAMPLE_VALUES: dict[str, object] = {
    "amount": 1,
    "reason": "r",
    "operation": "op",
    "consumption_id": "c",
    "payment_ref": "p",
    "hold_id": "h",
    "price": {"amount": "1", "currency": "USD"},
}


def test_a_batch_item_is_the_command_itself_with_its_op() -> None:
    for spec in REGISTRY.batch_specs():
        required = {
            info.name: SAMPLE_VALUES[info.name]
            for info in msgspec.structs.fields(spec.command)
            if info.required
        }
        item = msgspec.json.encode({"op": spec.op, "account_id": "a", **required})
        decoded = msgspec.json.decode(item, type=REGISTRY.command_types[0] | spec.command)
        assert type(decoded) is spec.command
        assert msgspec.json.encode(decoded).startswith(b'{"op":"' + spec.op.encode())
