"""House rules read from the code: layers without import cycles, short functions,
a Trainer constructor that takes its config rather than loose values."""

from __future__ import annotations

import ast
import graphlib
import inspect
from pathlib import Path

import pytest

from conftest import ROOT

SOURCE = ROOT / "src" / "jaxclf"
MAX_FUNCTION_LINES = 50


def _modules() -> dict[str, Path]:
    """``jaxclf.a.b`` -> its file, for every module of the package."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_modules(tree: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package's modules a module imports at run time (``TYPE_CHECKING`` imports excluded)."""
    skipped = {id(child) for node in ast.walk(tree) if _is_type_checking_block(node) for child in ast.walk(node)}
    imported = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
    return {name for name in imported if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported_modules(ast.parse(path.read_text()), modules) - {name} for name, path in modules.items()}


def test_the_import_graph_is_read_from_the_code():
    graph = import_graph()
    assert "jaxclf.checkpointing" in graph["jaxclf.runs"] and "jaxclf.trainer" in graph["jaxclf.run"]
    assert "jaxclf.train_state" not in graph["jaxclf.checkpointing"]  # storage knows nothing of models


def test_no_import_cycle_among_the_packages_modules():
    sorter = graphlib.TopologicalSorter(import_graph())
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")


def test_lower_layers_know_nothing_of_higher_ones():
    graph = import_graph()
    for pure in ("jaxclf.losses", "jaxclf.targets", "jaxclf.objectives", "jaxclf.checkpointing"):
        assert not graph[pure] & {"jaxclf.runs", "jaxclf.run", "jaxclf.trainer", "jaxclf.config", "jaxclf.callbacks"}, (
            pure
        )
    assert not {name for name in graph if name != "jaxclf.run" and "jaxclf.run" in graph[name]} - {
        "jaxclf.study",
        "jaxclf.cli",
    }


def test_no_function_is_longer_than_50_lines():
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long


def test_the_trainer_constructor_takes_at_most_six_parameters():
    from jaxclf.trainer import Trainer

    parameters = list(inspect.signature(Trainer.__init__).parameters)[1:]
    assert len(parameters) <= 6, parameters
    assert parameters[:2] == ["config", "hardware"]  # the typed config, not one value per key
