"""The package's import graph: layers point one way (api -> services -> repositories/db), no cycles.

Read from the source with `ast`, every import counted, those inside functions too: an import
put off to call time still makes the two modules depend on each other. The tests' own imports
are held to one rule too: what they share comes from `tests/support/`.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "analytics_mock"
TESTS = Path(__file__).resolve().parent

# Lowest first. A module may import its own layer and the ones below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "analytics_mock",
            "analytics_mock.config_files",
            "analytics_mock.crypto",
            "analytics_mock.errors",
            "analytics_mock.formats",
            "analytics_mock.logs",
            "analytics_mock.passwords",
            "analytics_mock.settings",
            "analytics_mock.tls",
            "analytics_mock.validation",
        ),
    ),
    ("db", ("analytics_mock.db", "analytics_mock.query", "analytics_mock.migrations")),
    ("mail", ("analytics_mock.mail",)),
    ("schemas", ("analytics_mock.schemas",)),
    ("services", ("analytics_mock.services",)),
    ("runtime", ("analytics_mock.runtime",)),
    ("api", ("analytics_mock.api",)),
    (
        "entry",
        (
            "analytics_mock.app",
            "analytics_mock.http_protocol",
            "analytics_mock.serving",
            "analytics_mock.cli",
            "analytics_mock.__main__",
            "analytics_mock.pytest_plugin",
            "analytics_mock.testing",
        ),
    ),
]


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The rank of the layer whose longest prefix names `module`."""
    best: tuple[int, int] | None = None
    for rank, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > best[1]
            ):
                best = (rank, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(path: Path, name: str, modules: Collection[str]) -> Iterator[tuple[int, str]]:
    """The line and the module of every import of module `name` (at `path`), relative ones too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from package import module` names a module; anything else, its package.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            yield node.lineno, target


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        graph[name].update(
            t
            for _line, t in imports(path, name, modules)
            if t in modules and t != name and t.startswith("analytics_mock")
        )
    return graph


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# Broken on the branch of issue 20 that owns cli.py and serving.py; delete once it is merged.
def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_a_cycle_and_an_upward_import() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert layer_of("analytics_mock.services.auth") > layer_of("analytics_mock.db.engine")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("elsewhere.module")


def test_tests_import_shared_helpers_from_tests_support_only() -> None:
    """No module under tests/, conftest.py included, imports a test module or a conftest.py.

    Tests mirror the package, and what several of them share lives in `tests/support/`, whose
    modules may import each other. `from tests import x` and relative imports count too.
    """
    modules = {module_name(path, TESTS.parent): path for path in TESTS.rglob("*.py")}
    elsewhere = sorted(
        {
            f"{path.relative_to(TESTS.parent)}:{line} imports {target}"
            for name, path in modules.items()
            for line, target in imports(path, name, modules)
            if (target == "tests" or target.startswith("tests."))
            and not (target == "tests.support" or target.startswith("tests.support."))
        }
    )
    assert elsewhere == []


def test_requests_reach_the_database_through_the_two_verbs() -> None:
    # `Database.session()` is for start-up, the command line and tests: code without a loop.
    calls = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for folder in ("api", "services")
        for path in sorted((PACKAGE / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("session", "run", "run_shared", "run_grouped")
    ]
    assert calls == []


def test_the_app_reads_headers_and_bodies_from_the_scope() -> None:
    # Starlette's `Headers` and `Request.body` cost a PUT several per cent of its CPU
    # (docs/performance.md): `header_of` and `whole_body` read the scope and messages instead.
    uses = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted((PACKAGE / "api").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr in ("headers", "body", "json", "form", "stream")
        and isinstance(node.value, ast.Name)
        and node.value.id == "request"
    ]
    assert uses == []
