"""The import rules of ARCHITECTURE.md, checked on the source: a rule that is only
written down drifts the first time someone is in a hurry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "tasks", "config")
MAX_LINES = 400
# Business logic runs the same in a worker, the model test and the reconciler.
PURE = ("pipeline.domain", "pipeline.keys", "pipeline.workflow", "pipeline.retry",
        "pipeline.breaker_state", "pipeline.errors", "pipeline.services", "pipeline.store",
        "pipeline.arguments", "pipeline.steps")
MESSAGING = ("celery", "kombu", "boto3", "botocore")
WORKER_SIDE = ("tasks", "pipeline.app", "pipeline.dispatch", "pipeline.sqs", "pipeline.worker",
               "pipeline.cli", "pipeline.dev", "pipeline.ops", "pipeline.monitoring")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if "migrations" not in p.parts}


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """Imports run when the module loads (not those inside functions or TYPE_CHECKING)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in known else node.module)
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return found


SOURCES = _sources()
IMPORTS = {name: _module_imports(path, set(SOURCES)) for name, path in SOURCES.items()}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                on_stack.discard(w)
                component.append(w)
            on_stack.discard(v)
            if component:
                found.append(sorted([v, *component]))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_the_checker_sees_imports_and_cycles() -> None:
    assert "config.topology" in IMPORTS["pipeline.workflow"]
    assert "celery" in IMPORTS["pipeline.app"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles() -> None:
    graph = {name: {i for i in imports if i in SOURCES} for name, imports in IMPORTS.items()}
    assert _cycles(graph) == []


def test_config_is_a_leaf() -> None:
    offenders = {name: sorted(i for i in imports if _within(i, ("pipeline", "tasks")))
                 for name, imports in IMPORTS.items() if _within(name, ("config",))}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("module", sorted(n for n in SOURCES if _within(n, PURE)))
def test_business_logic_imports_no_messaging(module: str) -> None:
    reaching = sorted(i for i in IMPORTS[module]
                      if _within(i, MESSAGING) or _within(i, WORKER_SIDE))
    assert reaching == []


def test_the_store_imports_only_the_domain() -> None:
    allowed = ("pipeline.store", "pipeline.domain", "pipeline.errors", "pipeline.keys",
               "pipeline.workflow", "pipeline.breaker_state", "pipeline.tracing", "config")
    outside = {name: sorted(i for i in imports if _within(i, ("pipeline", "tasks", "config"))
                            and not _within(i, allowed))
               for name, imports in IMPORTS.items() if _within(name, ("pipeline.store",))}
    assert {name: found for name, found in outside.items() if found} == {}


def test_no_sql_outside_the_store() -> None:
    # The simulators keep the fake gateway's and carrier's own books; testing creates
    # and drops test databases. Exceptions (sqlalchemy.exc) may be caught anywhere.
    allowed = ("pipeline.store", "pipeline.services.simulators", "pipeline.testing")
    writing = sorted(name for name, imports in IMPORTS.items()
                     if not _within(name, allowed)
                     and any(_within(i, ("sqlalchemy",)) and not _within(i, ("sqlalchemy.exc",))
                             for i in imports))
    assert writing == []


def test_no_module_is_over_the_line_budget() -> None:
    long = {name: n for name, path in SOURCES.items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}
