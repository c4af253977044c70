"""The package's import graph: stairs go one way, no circles, no private names across packages.

The floors, from the ground up (a module may import its own floor and any floor below):

0. ``routetrace.core``: spans, traces, context, destination, settings, the record of a request
1. ``routetrace.export``: the queue and its worker, retry, spool, watchdog, lifecycle
2. ``routetrace.backends``: where traces go, reached by the worker through a protocol in core
3. ``routetrace.routing`` and ``routetrace.middleware``: the route table, and the middleware that
   reads it (middleware may import routing, never the reverse)
4. the roof: the public API (``routetrace/__init__.py`` and its public modules), ``cli``,
   ``viewer``

Every import counts, whether at the top of a module, inside a function or under
``TYPE_CHECKING``: a type-only import upward is still a floor that knows about the one above it.
The graph is read from the source with :mod:`ast`, so the test needs nothing installed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "routetrace"

FLOORS = {
    "core": 0,
    "export": 1,
    "backends": 2,
    "routing": 3,
    "middleware": 3,
    "cli": 4,
    "viewer": 4,
}
ROOF = 4
# Beside each other on floor 3, but only one way.
FORBIDDEN_SIDEWAYS = {("routing", "middleware")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def resolve(name: str) -> str | None:
    """The routetrace module ``name`` refers to (a module, or the package holding a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def imports_of(module: str) -> Iterator[tuple[str, list[str], int]]:
    """``(target module, names taken from it, line)`` for every import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    base = module if is_package(module) else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    yield target, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module or ""
            if not source.startswith("routetrace"):
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in MODULES:  # `from routetrace.core import tracer`
                    yield submodule, [], node.lineno
                else:
                    target = resolve(source)
                    if target:
                        yield target, [alias.name], node.lineno


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in imports_of(module):
            if target != module:
                edges[module].add(target)
    return edges


def package_of(module: str) -> str:
    """The first-level subpackage (``core``, ``middleware``...), or ``""`` for the roof's
    own modules (``routetrace/__init__.py`` and public modules beside it)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FLOORS:
        return parts[1]
    return ""


def floor_of(module: str) -> int:
    package = package_of(module)
    return FLOORS[package] if package else ROOF


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively: the import circles (components of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    circles: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        circles.append(sorted(component))
    return circles


def test_every_subpackage_has_a_floor() -> None:
    unknown = {m.split(".")[1] for m in MODULES if is_package(m) and m.count(".") == 1}
    assert unknown <= set(FLOORS), f"give these packages a floor: {sorted(unknown - set(FLOORS))}"


def test_the_import_graph_has_no_circle() -> None:
    circles = strongly_connected(graph())
    assert circles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_module_imports_a_floor_above_its_own() -> None:
    upward = set()
    for module in MODULES:
        for target, _, line in imports_of(module):
            if floor_of(target) > floor_of(module) or (
                (package_of(module), package_of(target)) in FORBIDDEN_SIDEWAYS
            ):
                upward.add(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} "
                           f"imports {target}")
    assert not upward, "imports that run upward:\n" + "\n".join(sorted(upward))


def test_no_private_name_is_imported_from_another_package() -> None:
    private = []
    for module in MODULES:
        for target, names, line in imports_of(module):
            if package_of(target) == package_of(module):
                continue
            hidden = [n for n in names if n.startswith("_") and not n.startswith("__")]
            hidden += [p for p in target.split(".")[1:] if p.startswith("_") and p != "__init__"]
            if hidden:
                private.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} "
                               f"takes {', '.join(hidden)} from {target}")
    assert private == [], "private names across packages:\n" + "\n".join(private)


def test_no_private_attribute_of_another_package_s_module_is_read() -> None:
    """``tracer_mod._tracer`` across packages is the same leak as importing ``_tracer``."""
    leaks = []
    for module in MODULES:
        aliases: dict[str, str] = {}
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in MODULES and alias.asname:
                        aliases[alias.asname] = alias.name
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("routetrace"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in MODULES:
                        aliases[alias.asname or alias.name] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                target = aliases[node.value.id]
                if package_of(target) != package_of(module):
                    leaks.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{node.lineno} "
                                 f"reads {target}.{node.attr}")
    assert leaks == [], "private attributes across packages:\n" + "\n".join(leaks)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        pytest.param({"a": {"b"}, "b": set()}, [], id="a line is no circle"),
        pytest.param({"a": {"b"}, "b": {"a"}}, [["a", "b"]], id="two files"),
        pytest.param({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]],
                     id="three files and a visitor"),
    ],
)
def test_the_circle_finder_finds_circles(edges: dict[str, set[str]],
                                         expected: list[list[str]]) -> None:
    assert strongly_connected(edges) == expected
